"""Randomization tests: the registry of modes, block randomization, and the runner.

Importing this package registers the built-in modes (``cascading``, ``independent``, ``full``, ``labels``,
``random_logit``), re-initialization laws and sanity-check variants (``mprt``, ``mprt_curve``, ``smprt``,
``emprt``, ``random_logit``).
"""

from saliency_sanity.randomization.blocks import block_generator, cascading, fully_randomized, independent
from saliency_sanity.randomization.laws import LAWS, LawSpec, register_law
from saliency_sanity.randomization.modes import MODES, ModeInputs, ModeSpec, Stage, mode_spec, register_mode
from saliency_sanity.randomization.runner import RunResult, Settings, run_randomization_test, run_stages
from saliency_sanity.randomization.variants import VARIANTS, NoiseAverage, RunScores, discrete_entropy, register_variant

__all__ = [
    "LAWS", "LawSpec", "MODES", "ModeInputs", "ModeSpec", "RunResult", "Settings", "Stage", "block_generator", "cascading",
    "independent", "mode_spec", "register_law", "register_mode", "run_randomization_test", "run_stages",
    "VARIANTS", "NoiseAverage", "RunScores", "discrete_entropy", "fully_randomized", "register_variant",
]
