"""Shared fixtures: the shipped MNIST models and a small batch of MNIST-shaped inputs."""

from __future__ import annotations

import pytest
import torch

from saliency_sanity.models import SanityModel, build_model

# Test tensors are tiny: intra-op threads cost more than they gain, and on a shared 2-core
# machine OpenMP's waiting threads made these tests about 8x slower (86 s against 10 s).
torch.set_num_threads(1)

# Every model the project ships for 28 x 28 inputs; tests parametrized over `model` run on each.
SHIPPED_ARCHS = ("cnn", "mlp")


@pytest.fixture(scope="session")
def shipped_models() -> dict[str, SanityModel]:
    """Built once per session (the MLP has 6M weights); tests must leave them as they found them."""
    return {arch: build_model(arch, seed=0).eval() for arch in SHIPPED_ARCHS}


@pytest.fixture(params=SHIPPED_ARCHS)
def model(request, shipped_models) -> SanityModel:
    return shipped_models[request.param]


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    """Three 1 x 28 x 28 images in [0, 1] with a zero border, like MNIST's black background."""
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x[..., :4, :] = 0
    x[..., :, :4] = 0
    return x


@pytest.fixture
def predicted(model, images) -> torch.Tensor:
    """The model's own argmax class for each image, the class the paper explains."""
    with torch.no_grad():
        return model(images).argmax(dim=1)
