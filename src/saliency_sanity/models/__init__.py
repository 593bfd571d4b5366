"""Models: the registry of architectures, the paper's MNIST models, Inception v3, checkpoints.

Importing this package registers the built-in architectures (``cnn``, ``mlp``, ``inception_v3``, ``efficientnet_lite0``).
Every nonlinearity is its own module, never in-place and never reused, so that hook-based
methods really apply their rules.
"""

from saliency_sanity.models.base import ReLU6, SanityModel, truncated_normal_
from saliency_sanity.models.registry import MODELS, ModelSpec, build_model, model_spec, register_model
from saliency_sanity.models.mnist import MnistCNN, MnistMLP  # isort: skip  (registers cnn, mlp)
from saliency_sanity.models.inception import InceptionV3  # isort: skip  (registers inception_v3)
from saliency_sanity.models.efficientnet import EfficientNetLite0  # isort: skip  (registers efficientnet_lite0)
from saliency_sanity.models.checkpoints import load_checkpoint, read_record, save_checkpoint

__all__ = [
    "MODELS", "EfficientNetLite0", "InceptionV3", "MnistCNN", "MnistMLP", "ModelSpec", "SanityModel", "build_model", "load_checkpoint",
    "ReLU6", "model_spec", "read_record", "register_model", "save_checkpoint", "truncated_normal_",
]
