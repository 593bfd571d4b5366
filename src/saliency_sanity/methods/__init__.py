"""Explanation methods. Importing this package registers every built-in method.

Use :func:`get_method` / :func:`available_methods`; add a method with :func:`register`.
"""

# Imported for their registrations, in the paper's order of methods (available_methods keeps it).
from saliency_sanity.methods import gradients, smoothing, guided, cam, deeplift, controls, expected, perturbation  # isort: skip  # noqa: F401
from saliency_sanity.methods.registry import (
    METHODS,
    Method,
    UnknownMethodError,
    available_methods,
    default_methods,
    get_method,
    register,
)

__all__ = ["METHODS", "Method", "UnknownMethodError", "available_methods", "default_methods", "get_method", "register"]
