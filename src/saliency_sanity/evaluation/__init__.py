"""Evaluations of a model's maps beyond the randomization tests, each a registry entry
(:mod:`saliency_sanity.evaluation.registry`) run by :func:`run_evaluation`.

Importing this package registers the built-in ones: ``convergence`` and ``path_outputs``
(:mod:`.convergence`), ``ablation`` (:mod:`.ablation`), ``shortcut`` (:mod:`.shortcut`),
``class_conversion`` (:mod:`.class_conversion`), ``protocols`` (:mod:`.protocols`, the verdict matrix).
"""

from saliency_sanity.evaluation import ablation, class_conversion, convergence, protocols, shortcut  # noqa: F401  (registers the built-in evaluations)
from saliency_sanity.evaluation.registry import EVALUATIONS, Evaluation, EvaluationRun, register_evaluation
from saliency_sanity.evaluation.runner import run_evaluation

__all__ = ["EVALUATIONS", "Evaluation", "EvaluationRun", "register_evaluation", "run_evaluation"]
