"""Helpers shared by the methods: batch chunking and generator checks."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def batch_slices(n: int, batch_size: int | None) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, each at most ``batch_size`` long (None: one)."""
    if batch_size is None:
        yield slice(0, n)
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def chunked(
    fn: Callable[..., torch.Tensor], batch_size: int | None, *tensors: torch.Tensor
) -> torch.Tensor:
    """Apply a per-example attribution ``fn(*tensors)`` over chunks of the batch (dim 0).

    Exact because every method here explains each example independently (eval mode).
    """
    slices = batch_slices(tensors[0].shape[0], batch_size)
    return torch.cat([fn(*(t[s] for t in tensors)) for s in slices])


@contextmanager
def quiet_captum() -> Iterator[None]:
    """Silence Captum's per-call notice that it sets (and later removes) hooks.

    The notice is informational; the registry-wide tests check that no hook is left behind.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Setting backward hooks", category=UserWarning)
        yield


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Noise is drawn on x's device, so the generator must live there too."""
    if generator is None:
        return
    gen, dev = torch.device(generator.device), torch.device(device)
    if gen.type != dev.type or (dev.type != "cpu" and (gen.index or 0) != (dev.index or 0)):
        raise ValueError(
            f"the generator is on {gen} but x is on {dev}; noise is drawn on x's device, "
            f"so pass torch.Generator(device=x.device).manual_seed(seed)"
        )
