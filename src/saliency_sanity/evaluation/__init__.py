"""Evaluations of attribution maps beyond the randomization tests, all on the harness's methods."""
