"""The paper's theory checks: the linear model and the 1-D conv + ReLU + sum-pooling model.

Both models have closed-form attributions (:mod:`.closed_forms`); the analyses check the
registry's methods against them and measure what the paper's explanation predicts:
:func:`run_linear` (a softmax-linear MNIST classifier) and :func:`run_convsum` (synthetic 1-D
signals, random vs trained filters). Each writes tidy CSVs (columns documented in its module)
and an npz of maps for the figures into ``results/theory/``.
"""

from saliency_sanity.theory.closed_forms import CONVSUM_FORMS, LINEAR_FORMS, TOLERANCE, relative_error
from saliency_sanity.theory.convsum import ConvSumSettings, run_convsum
from saliency_sanity.theory.linear import LinearSettings, run_linear
from saliency_sanity.theory.models import ConvSumModel, LinearModel
from saliency_sanity.theory.signals import SignalSpec, make_signals

__all__ = [
    "CONVSUM_FORMS", "LINEAR_FORMS", "TOLERANCE", "ConvSumModel", "ConvSumSettings", "LinearModel",
    "LinearSettings", "SignalSpec", "make_signals", "relative_error", "run_convsum", "run_linear",
]
