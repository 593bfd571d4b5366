"""saliency_sanity: a reproducible replication of "Sanity Checks for Saliency Maps"."""

__version__ = "0.1.0"
