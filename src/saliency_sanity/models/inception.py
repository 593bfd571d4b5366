"""torchvision's Inception v3 (registry entry ``inception_v3``), rewired for hook-based methods, with the paper's 17 blocks.

Rewiring: torchvision's ``BasicConv2d`` applies ``F.relu(..., inplace=True)``, so guided
backprop, deconvnet and DeepLIFT, which act on ``nn.ReLU`` modules, would silently see no
ReLU at all (guided backprop would equal the gradient). :class:`ConvBNReLU` has the same
parameters and state-dict keys with its own ``nn.ReLU`` module; the two reduction blocks
(Mixed_6a, Mixed_7a) get their max-pooling branch as an ``nn.MaxPool2d`` module so that DeepLIFT
applies its max-pool rule there too. The logits are unchanged (tested).

Weights: torchvision's ImageNet checkpoint, fetched by :func:`fetch_weights` (a file already in
place, the data mirror, or torchvision's URL) and checked against its sha256 (the full digest
from the config, else the 8-digit prefix in torchvision's file name). ``random`` builds the same
model with untrained weights, for offline runs.

Randomization re-initializes a block's trainable weights with the original's initializers
(truncated normal, sigma 0.1, for convolution and fully connected weights; BatchNorm scale 1 and
offset 0) and keeps BatchNorm's running statistics, as Adebayo et al. did; with
``reset_bn_statistics`` the running mean and variance are reset too (a different experiment:
every randomized layer then sees un-normalized activations of its own).
"""

from __future__ import annotations

import logging
import os
import re
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import inception as tv_inception

from saliency_sanity.data.download import (
    MIRROR_CONFIG_KEY,
    MIRROR_ENV,
    DataError,
    copy_from_mirror,
    download,
    file_hash,
    hash_matches,
    mirror_folder,
    reachable,
)
from saliency_sanity.data.images import INCEPTION_PREPROCESSING
from saliency_sanity.models.base import SanityModel, init_batchnorm_, truncated_normal_
from saliency_sanity.models.registry import PublishedWeights, register_model
from saliency_sanity.models.weights import WeightsError, verify_sha256

log = logging.getLogger(__name__)

WEIGHTS_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
WEIGHTS_FILE = WEIGHTS_URL.rsplit("/", 1)[1]
WEIGHTS_CONFIG_KEY = "imagenet.models.inception_v3.weights"
SHA256_CONFIG_KEY = "imagenet.models.inception_v3.weights_sha256"
TORCHVISION_HASH = re.compile(r"-([0-9a-f]{8,})\.pth$")  # torchvision's <name>-<sha256 prefix>.pth
# The paper's order (Logits = torchvision's fc), from the output down to the input.
BLOCKS = (
    "fc", "Mixed_7c", "Mixed_7b", "Mixed_7a", "Mixed_6e", "Mixed_6d", "Mixed_6c", "Mixed_6b", "Mixed_6a",
    "Mixed_5d", "Mixed_5c", "Mixed_5b", "Conv2d_4a_3x3", "Conv2d_3b_1x1", "Conv2d_2b_3x3", "Conv2d_2a_3x3",
    "Conv2d_1a_3x3",
)
INIT_STD = 0.1


class ConvBNReLU(nn.Module):
    """torchvision's BasicConv2d (same parameters and keys) with its ReLU as a module."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class ReductionA(tv_inception.InceptionB):
    """Mixed_6a with its max-pool branch as a module."""

    def __init__(self, in_channels: int, conv_block=None) -> None:
        super().__init__(in_channels, conv_block=conv_block)
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def _forward(self, x: Tensor) -> list[Tensor]:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch3x3(x), double, self.branch_pool(x)]


class ReductionB(tv_inception.InceptionD):
    """Mixed_7a with its max-pool branch as a module."""

    def __init__(self, in_channels: int, conv_block=None) -> None:
        super().__init__(in_channels, conv_block=conv_block)
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return [branch3x3, branch7x7x3, self.branch_pool(x)]


class InceptionV3(tv_inception.Inception3, SanityModel):
    """Inception v3 with torchvision's parameters and keys, every ReLU its own module.

    Takes ImageNet-normalized input (:mod:`saliency_sanity.images`) and applies torchvision's
    ``transform_input``, exactly as ``torchvision.models.inception_v3(weights=...)`` does. The
    auxiliary classifier is kept so that torchvision's checkpoint loads strictly; it is not on the
    inference path and is never randomized. Grad-CAM uses Mixed_7c.
    """

    arch = "inception_v3"
    block_names = BLOCKS

    def __init__(self, num_classes: int = 1000, reset_bn_statistics: bool = False) -> None:
        blocks = [
            ConvBNReLU,
            *(partial(cls, conv_block=ConvBNReLU) for cls in (
                tv_inception.InceptionA, ReductionA, tv_inception.InceptionC, ReductionB,
                tv_inception.InceptionE, tv_inception.InceptionAux,
            )),
        ]
        super().__init__(num_classes=num_classes, aux_logits=True, transform_input=True,
                         inception_blocks=blocks, init_weights=False)
        self.reset_bn_statistics = reset_bn_statistics
        self.reset_parameters()

    @property
    def gradcam_layer(self) -> nn.Module:
        # A property, not an attribute: assigning a module would register it a second time and
        # duplicate its keys in the state dict, which torchvision's checkpoint would then lack.
        return self.Mixed_7c

    @property
    def cam_classifier(self) -> nn.Module:
        return self.fc  # Mixed_7c -> global average pooling -> (dropout, identity in eval) -> fc: CAM applies

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        _init_modules(self.block(name), generator, reset_bn_statistics=self.reset_bn_statistics)

    def init_module(self, module: nn.Module, generator: torch.Generator | None = None) -> None:
        _init_modules(module, generator, reset_bn_statistics=self.reset_bn_statistics)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Untrained weights: every block, and the auxiliary classifier, freshly initialized."""
        super().reset_parameters(generator)
        _init_modules(self.AuxLogits, generator, reset_bn_statistics=True)


def _init_modules(module: nn.Module, generator: torch.Generator | None, *, reset_bn_statistics: bool) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                truncated_normal_(m.weight, INIT_STD, generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                init_batchnorm_(m, reset_bn_statistics)


# --------------------------------------------------------------------------- weights


def expected_hash(path: Path, sha256: str | None) -> str | None:
    """The configured sha256, else the prefix in a torchvision-style file name, else None."""
    if sha256:
        return sha256.lower()
    match = TORCHVISION_HASH.search(Path(path).name)
    return match.group(1) if match else None


def verify_weights(path: Path, sha256: str | None = None) -> str:
    """Check a weights file against its expected sha256; returns the file's full sha256."""
    return verify_sha256(path, expected_hash(path, sha256), what="Inception v3 weights file",
                         config_key=SHA256_CONFIG_KEY)


def fetch_weights(
    source: str, data_dir: str | os.PathLike, *, sha256: str | None = None,
    mirror: str | os.PathLike | None = None, retries: int = 3, timeout: float = 60,
) -> Path:
    """The verified weights file for ``source``: ``torchvision`` or a local file path.

    ``torchvision``: ``<data_dir>/imagenet/weights/<file>`` if already there and valid, else a copy
    from the mirror (``<mirror>/imagenet/weights/<file>``), else torchvision's download. A local path
    is used in place, after its hash check.
    """
    if source != "torchvision":
        path = Path(source).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"Inception v3 weights file {path} (config key '{WEIGHTS_CONFIG_KEY}') does not exist; give "
                f"the path of a torchvision Inception v3 checkpoint, 'torchvision' to download {WEIGHTS_URL}, "
                "or 'random' for untrained weights"
            )
        verify_weights(path, sha256)
        return path
    target = Path(data_dir) / "imagenet" / "weights" / WEIGHTS_FILE
    expected = expected_hash(target, sha256)
    if target.is_file() and hash_matches(file_hash(target, "sha256"), expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    mirror_dir = mirror_folder(mirror)
    mirrored = mirror_dir / "imagenet" / "weights" / WEIGHTS_FILE if mirror_dir is not None else None
    if mirrored is not None and mirrored.is_file():
        copy_from_mirror(mirrored, target, expected, algorithm="sha256")
        return target
    hint = (
        f"The Inception v3 weights were expected at {target}. Without network access, put torchvision's "
        f"{WEIGHTS_FILE} there, or at <mirror>/imagenet/weights/{WEIGHTS_FILE} ({MIRROR_ENV} or config key "
        f"'{MIRROR_CONFIG_KEY}'), or set the config key '{WEIGHTS_CONFIG_KEY}' to the file's path, or to "
        "'random' for untrained weights."
    )
    try:
        download((WEIGHTS_URL.rsplit("/", 1)[0] + "/",), WEIGHTS_FILE, target, expected,
                  retries=retries, timeout=timeout, algorithm="sha256", hint=hint)
    except DataError as err:
        raise WeightsError(str(err)) from err
    return target


def load_weights(path: Path, sha256: str | None = None, *, reset_bn_statistics: bool = False) -> InceptionV3:
    """An :class:`InceptionV3` holding the (verified) torchvision checkpoint at ``path``, in eval mode."""
    verify_weights(path, sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise WeightsError(f"{path} could not be read as a PyTorch state dict ({type(err).__name__}); it is not a "
                           "weights file. Give torchvision's inception_v3_google-0cc3c7bd.pth, or 'random'") from None
    model = InceptionV3(reset_bn_statistics=reset_bn_statistics)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path} is not a torchvision Inception v3 checkpoint: {err}") from err
    return model.eval()


def build_inception(
    weights: str = "torchvision", data_dir: str | os.PathLike = "data", *, sha256: str | None = None, seed: int = 0,
    mirror: str | os.PathLike | None = None, reset_bn_statistics: bool = False,
) -> tuple[InceptionV3, dict]:
    """The model for the config value ``imagenet.weights`` (``torchvision``, a path, or ``random``),
    with a record of where its weights came from."""
    if weights == "random":
        model = InceptionV3(reset_bn_statistics=reset_bn_statistics)
        model.reset_parameters(torch.Generator().manual_seed(seed))
        return model.eval(), {"weights": "random", "weights_seed": seed, "pretrained": False}
    path = fetch_weights(weights, data_dir, sha256=sha256, mirror=mirror)
    model = load_weights(path, sha256, reset_bn_statistics=reset_bn_statistics)
    # a file no expected hash vouches for may hold any weights: recorded as unverified, not as pretrained
    verified = expected_hash(path, sha256) is not None
    if not verified:
        log.warning("%s has no expected sha256 (set %s): recorded as unverified weights", path, SHA256_CONFIG_KEY)
    return model, {"weights": str(path), "weights_sha256": file_hash(path, "sha256"), "weights_verified": verified,
                   "pretrained": True if verified else None,
                   "weights_url": WEIGHTS_URL if weights == "torchvision" else None}


def auto_weights(data_dir: str | os.PathLike = "data", mirror: str | os.PathLike | None = None) -> str | None:
    """``torchvision`` when its weights file is in place (the data folder or the mirror) or its URL
    answers; else None: the value ``auto`` then leaves Inception v3 out of the run."""
    target = Path(data_dir) / "imagenet" / "weights" / WEIGHTS_FILE
    mirror_dir = mirror_folder(mirror)
    mirrored = mirror_dir / "imagenet" / "weights" / WEIGHTS_FILE if mirror_dir is not None else None
    if target.is_file() or (mirrored is not None and mirrored.is_file()) or reachable(WEIGHTS_URL):
        return "torchvision"
    return None


register_model(
    "inception_v3", datasets=("imagenet",), input_shape=(3, 299, 299),
    preprocessing=f"{INCEPTION_PREPROCESSING.describe()}; the model applies torchvision's transform_input",
    weights=("auto", "torchvision", "file", "random"), image_preprocessing=INCEPTION_PREPROCESSING,
    published=PublishedWeights(build_inception, auto=auto_weights),
)(InceptionV3)
