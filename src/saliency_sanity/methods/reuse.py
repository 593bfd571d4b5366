"""Work shared between methods within one scope (one stage of a randomization test).

Several methods are reductions or products of the same computations: SmoothGrad,
SmoothGrad-squared and VarGrad reduce the same gradients of the same noisy copies, and Guided
Grad-CAM multiplies the Guided Backprop and Grad-CAM maps, and Gradient x Input multiplies the
gradient by the input. Inside :func:`shared_work`, code can
:func:`memoize` such a computation under an explicit key, and the next method that needs it
reuses it instead of running the model again. Outside it nothing is cached: :func:`memoize`
just calls the computation, so direct calls behave exactly as without this module.

Keys are tuples. Models, tensors and other objects in a key stand for their identity (tensors:
their storage, offset, shape, strides, dtype and version counter, so a ``detach()``-ed view of
the same data matches, and an in-place change does not), and the memo keeps a reference to each
of them until the scope closes, so no identity can be reused by another object meanwhile. The
scope assumes what it keys on is not modified behind autograd's back (``.data``) while it is
open. A key must name every parameter that changes the result; ``batch_size`` is left out where
it only chunks the work (the method contract: chunking does not change a map). All entries are
dropped when the scope closes, which frees their memory (on the device too).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator, TypeVar

import torch

T = TypeVar("T")


class Memo:
    """The entries of one shared-work scope, with the references that pin their keys' objects."""

    def __init__(self) -> None:
        self.entries: dict[Hashable, Any] = {}
        self.pinned: dict[int, Any] = {}  # id -> object, for every object standing in a key
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.pinned.clear()

    def token(self, part: Any) -> Hashable:
        """A hashable stand-in for one key part: values as themselves, objects by identity."""
        if part is None or isinstance(part, (bool, int, float, str, bytes, torch.dtype, torch.device)):
            return part
        if isinstance(part, (tuple, list)):
            return (type(part).__name__, *(self.token(p) for p in part))
        if isinstance(part, dict):
            return ("dict", *sorted((str(k), self.token(v)) for k, v in part.items()))
        if isinstance(part, torch.Generator):
            raise TypeError("key a generator by its state (generator_state), not by the object")
        self.pinned[id(part)] = part
        if isinstance(part, torch.Tensor):
            return (
                "tensor", str(part.device), part.dtype, part.untyped_storage().data_ptr(),
                part.storage_offset(), tuple(part.shape), part.stride(), part._version,
            )
        return ("object", type(part).__qualname__, id(part))

    def get(self, key: tuple, compute: Callable[[], T]) -> T:
        token = self.token(key)
        if token in self.entries:
            self.hits += 1
            return self.entries[token]
        self.misses += 1
        value = compute()
        self.entries[token] = value
        return value


_ACTIVE: contextvars.ContextVar[Memo | None] = contextvars.ContextVar("saliency_sanity_shared_work", default=None)


def active_memo() -> Memo | None:
    """The open scope's memo, or None outside :func:`shared_work`."""
    return _ACTIVE.get()


@contextmanager
def shared_work(memo: Memo | None = None) -> Iterator[Memo]:
    """Open a scope in which :func:`memoize` caches; its entries are dropped on exit.

    A nested ``shared_work()`` joins the open scope (and leaves it open on exit). With ``memo``,
    the block works in that memo instead and leaves its entries there on exit: a caller can
    keep one memo for a longer scope (the runner: one per stage) and activate it only around
    the calls that share work; it drops the entries with ``memo.clear()`` (or the memo itself).
    """
    outer = _ACTIVE.get()
    if memo is None and outer is not None:
        yield outer
        return
    own = memo is None
    memo = Memo() if own else memo
    reset = _ACTIVE.set(memo)
    try:
        yield memo
    finally:
        _ACTIVE.reset(reset)
        if own:
            memo.clear()


def memoize(key: tuple, compute: Callable[[], T], *, clone: bool = False) -> T:
    """``compute()``, computed once per key within shared work; outside it, every time.

    The cached value is shared by every caller: with ``clone=True`` (a tensor), each caller gets
    its own copy, so one that modifies its result in place cannot change what the next one gets.
    """
    memo = _ACTIVE.get()
    if memo is None:
        return compute()
    value = memo.get(key, compute)
    return value.clone() if clone else value


def generator_state(generator: torch.Generator) -> tuple:
    """A key part for where a generator stands: its device and state (not the object)."""
    return ("generator", str(generator.device), bytes(generator.get_state().numpy()))
