"""DeepLIFT (Shrikumar et al. 2017) with the Rescale and the RevealCancel rule, implemented here.

Why not Captum's ``DeepLift``: in Captum 0.9 a nonlinearity that feeds another hooked module directly
(ReLU -> MaxPool, as in the paper's CNN) reads a stale output gradient, and summation-to-delta fails by
several percent (captum issues #1104, #1276); no maintained PyTorch library has RevealCancel. This
version has no tensor hooks: the input and the baseline run through the model as one batch, and a
forward hook on each nonlinear module replaces its output for the input half by a tensor of the same
value whose derivative is the rule's multiplier. Backpropagating the target logit then chains
multipliers through the linear layers, and ``multiplier * (x - x')`` sums to f(x) - f(x')
(summation-to-delta) under either rule.

Rules for an elementwise nonlinearity y = f(z), with dz, dy the differences from the reference:
- Rescale: ``m = dy / dz``; the ordinary gradient where ``|dz|`` is below ``EPS``.
- RevealCancel: dz is split by the Linear rule into the sum of its positive terms dz+ and its negative
  terms dz- (over the terms w_i dx_i of the convolution or linear layer that computes z, with an
  eval-mode BatchNorm between them folded into w); then dy+ = (f(z' + dz+) - f(z') + f(z' + dz) -
  f(z' + dz-)) / 2, dy- likewise, and the multipliers m+ = dy+ / dz+, m- = dy- / dz- flow back to
  the layer's inputs through the positive and the negative terms respectively (an input with dx = 0
  takes half of each, as the paper's code). Where z is not computed by such a layer the split is
  undefined and the rule is Rescale (to which RevealCancel reduces when dz- = 0).

Max-pooling routes each window's ``dy`` to the input that attains the larger of the two maxima: the
input's argmax when its max grew, which is the gradient the DeepLIFT paper uses, and the reference's
argmax otherwise, where the gradient would break summation-to-delta.

``subtract_class_mean`` explains logit_c - mean_k logit_k: the paper's normalization for a softmax
output (subtracting the mean contribution over classes), in the same single backward pass by
linearity; the maps then sum to the difference of that quantity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from saliency_sanity.baselines import resolve_baseline
from saliency_sanity.methods.common import chunked
from saliency_sanity.methods.registry import register

EPS = 1e-10
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU)
MAX_POOLS = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}
LINEAR_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # subclasses too (timm's Conv2dSame)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
RULES = ("rescale", "revealcancel")


def _with_derivative(y: torch.Tensor, z: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """y's value with derivative ``slope`` w.r.t. z (elementwise, same shapes)."""
    return y.detach() + slope.detach() * (z - z.detach())


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _check_not_inplace(module: nn.Module) -> None:
    if getattr(module, "inplace", False):
        raise ValueError(f"DeepLIFT needs each nonlinearity's input, but {module} is in-place; use inplace=False")


def _rescale_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    _check_not_inplace(module)
    (z_x, z_r), (y_x, y_r) = inputs[0].chunk(2), output.chunk(2)
    dz, dy = (z_x - z_r).detach(), (y_x - y_r).detach()
    changed = dz.abs() > EPS
    slope = _safe_ratio(dy, dz, changed)
    return torch.cat([torch.where(changed, _with_derivative(y_x, z_x, slope), y_x), y_r])


def _maxpool_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    pool = partial(
        MAX_POOLS[type(module)], kernel_size=module.kernel_size, stride=module.stride,
        padding=module.padding, dilation=module.dilation, ceil_mode=module.ceil_mode, return_indices=True,
    )
    z_x, z_r = inputs[0].chunk(2)
    (y_x, idx_x), (y_r, idx_r) = pool(z_x), pool(z_r.detach())
    dy = (y_x - y_r).detach()
    winner = torch.where(dy >= 0, idx_x, idx_r).flatten(2)
    z_at = z_x.flatten(2).gather(2, winner).view_as(y_x)
    dz_at = (z_x - z_r).detach().flatten(2).gather(2, winner).view_as(y_x)
    changed = dz_at.abs() > EPS  # |dz_at| >= |dy| by the choice of winner
    slope = torch.where(changed, _safe_ratio(dy, dz_at, changed), torch.ones_like(dy))
    return torch.cat([y_x.detach() + slope * (z_at - z_at.detach()), output.chunk(2)[1]])


@dataclass(frozen=True)
class LinearTerms:
    """z = layer(source): the convolution or linear layer that computes a nonlinearity's input, with a
    BatchNorm's scale folded into ``weight``; what the Linear rule splits into positive and negative terms."""

    layer: nn.Module
    source: torch.Tensor  # the layer's input, input half then reference half
    weight: torch.Tensor

    def scaled(self, scale: torch.Tensor) -> LinearTerms:
        return LinearTerms(self.layer, self.source, self.weight * scale.view(-1, *([1] * (self.weight.dim() - 1))))

    def split(self, apply: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(dz+, the surrogate of the positive terms): dz+ is the sum of the positive terms w_i dx_i; the
        surrogate is zero and has, w.r.t. the input half of the source, the derivative the Linear rule gives
        the positive part (w+ where dx > 0, w- where dx < 0, w / 2 where dx = 0). The negative part's
        derivative is the layer's own minus it. ``apply(layer, s, w)``: the layer on s with weight w, no bias."""
        s_x, s_r = self.source.chunk(2)
        ds = (s_x - s_r).detach()
        w_pos, w_neg = self.weight.clamp(min=0).detach(), self.weight.clamp(max=0).detach()
        with torch.no_grad():
            dz_pos = apply(self.layer, ds.clamp(min=0), w_pos) + apply(self.layer, ds.clamp(max=0), w_neg)
        half = 0.5 * (ds == 0).to(ds.dtype)
        rising, falling = s_x * ((ds > 0).to(ds.dtype) + half), s_x * ((ds < 0).to(ds.dtype) + half)
        pos_terms = apply(self.layer, rising, w_pos) + apply(self.layer, falling, w_neg)
        return dz_pos, pos_terms - pos_terms.detach()


def _batchnorm_scale(module: nn.Module) -> torch.Tensor | None:
    """An eval-mode BatchNorm's per-channel scale gamma / sqrt(var + eps) (None where it uses batch statistics)."""
    if module.training or module.running_var is None:
        return None
    scale = torch.rsqrt(module.running_var + module.eps)
    return scale * module.weight if module.weight is not None else scale


class RevealCancel:
    """The hooks of one RevealCancel call: they record which layer computed each tensor, so that a
    nonlinearity can split its input's difference into positive and negative terms."""

    def __init__(self, model: nn.Module) -> None:
        self.terms: dict[int, tuple[torch.Tensor, LinearTerms]] = {}  # id(z) -> (z, its layer's terms)
        self.inside: dict[nn.Module, LinearTerms] = {}  # BatchNorm modules running now, with their input's terms
        self.replaying = False  # a layer re-run with split weights (LinearTerms.split) records nothing
        self.owner = {child: parent for parent in model.modules() for child in parent.children()
                      if isinstance(parent, BATCHNORMS)}  # a nonlinearity inside a BatchNorm (timm's BatchNormAct)

    def hooks(self, module: nn.Module) -> list[tuple[str, Callable]]:
        if isinstance(module, ELEMENTWISE):
            return [("forward", self._nonlinearity)]
        if type(module) in MAX_POOLS:
            return [("forward", _maxpool_hook)]
        if isinstance(module, LINEAR_LAYERS):
            return [("forward", self._linear)]
        if isinstance(module, BATCHNORMS):
            return [("pre", self._batchnorm_enter), ("forward", self._batchnorm_exit)]
        return []

    def _record(self, z: torch.Tensor, terms: LinearTerms | None) -> None:
        if terms is not None:
            self.terms[id(z)] = (z, terms)

    def _lookup(self, z: torch.Tensor) -> LinearTerms | None:
        entry = self.terms.get(id(z))
        return entry[1] if entry is not None and entry[0] is z else None

    def _linear(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not self.replaying:
            self._record(output, LinearTerms(module, inputs[0], module.weight))

    def _apply(self, layer: nn.Module, source: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer on ``source`` with ``weight`` and no bias (its own padding, stride and groups)."""
        params = {"weight": weight}
        if getattr(layer, "bias", None) is not None:
            params["bias"] = torch.zeros_like(layer.bias)
        self.replaying = True
        try:
            return torch.func.functional_call(layer, params, (source,))
        finally:
            self.replaying = False

    def _batchnorm_enter(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        terms, scale = self._lookup(inputs[0]), _batchnorm_scale(module)
        if terms is not None and scale is not None:
            self.inside[module] = terms.scaled(scale)

    def _batchnorm_exit(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        terms = self.inside.pop(module, None)
        if type(module) in BATCHNORMS:  # a plain BatchNorm's output is affine in its input; timm's adds an activation
            self._record(output, terms)

    def _nonlinearity(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        _check_not_inplace(module)
        z = inputs[0]
        terms = self._lookup(z)
        if terms is None and module in self.owner:  # the activation inside a BatchNorm acts on its normalized input
            terms = self.inside.get(self.owner[module])
        if terms is None:
            return _rescale_hook(module, inputs, output)
        (z_x, z_r), (y_x, y_r) = z.chunk(2), output.chunk(2)
        dz_pos, pos_grad = terms.split(self._apply)
        neg_grad = (z_x - z_x.detach()) - pos_grad  # z is the layer's output: its derivative is w, the parts' sum
        dz = (z_x - z_r).detach()
        dz_neg = dz - dz_pos
        with torch.no_grad():
            f = module.forward  # not module(...): that would run this hook again
            z_r = z_r.detach()
            dy = y_x.detach() - y_r
            after_pos, after_neg = f(z_r + dz_pos), f(z_r + dz_neg)
            dy_pos = 0.5 * ((after_pos - y_r) + (y_x.detach() - after_neg))
            dy_neg = dy - dy_pos
            has_pos, has_neg = dz_pos.abs() > EPS, dz_neg.abs() > EPS
            both = has_pos & has_neg  # else one part carries all of dy: Rescale on it
            m_pos = torch.where(both, _safe_ratio(dy_pos, dz_pos, has_pos), _safe_ratio(dy, dz_pos, has_pos))
            m_neg = torch.where(both, _safe_ratio(dy_neg, dz_neg, has_neg), _safe_ratio(dy, dz_neg, has_neg))
        revealed = y_x.detach() + m_pos * pos_grad + m_neg * neg_grad
        return torch.cat([torch.where(has_pos | has_neg, revealed, y_x), y_r])


def _rescale_hooks(module: nn.Module) -> list[tuple[str, Callable]]:
    if isinstance(module, ELEMENTWISE):
        return [("forward", _rescale_hook)]
    if type(module) in MAX_POOLS:
        return [("forward", _maxpool_hook)]
    return []


def _multipliers(model: nn.Module, x: torch.Tensor, target: torch.Tensor, base: torch.Tensor, *,
                 subtract_class_mean: bool, rule: str) -> torch.Tensor:
    hooks_of = RevealCancel(model).hooks if rule == "revealcancel" else _rescale_hooks
    handles = []
    try:
        for module in model.modules():
            for kind, hook in hooks_of(module):
                register = module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
                handles.append(register(hook))
        with torch.enable_grad():
            inputs = x.detach().requires_grad_(True)
            logits = model(torch.cat([inputs, base]))[: x.shape[0]]
            selected = logits.gather(1, target.view(-1, 1))
            if subtract_class_mean:
                selected = selected - logits.mean(1, keepdim=True)
            (grad,) = torch.autograd.grad(selected.sum(), inputs)
    finally:
        for handle in handles:
            handle.remove()
    return grad


def deeplift(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, rule: str,
             baseline: torch.Tensor | None = None, subtract_class_mean: bool = False,
             batch_size: int | None = None) -> torch.Tensor:
    """DeepLIFT contributions of x - baseline (zeros) to the target logit under ``rule`` (:data:`RULES`).

    Input and baseline run as one batch, so chunks hold ``batch_size // 2`` examples. Nonlinearities
    must be modules (not functional calls) to get their rule.
    """
    if rule not in RULES:
        raise ValueError(f"unknown DeepLIFT rule {rule!r}; choose one of {RULES}")
    base = resolve_baseline(x, baseline)
    chunk = None if batch_size is None else max(1, batch_size // 2)
    step = partial(_multipliers, model, subtract_class_mean=subtract_class_mean, rule=rule)
    return chunked(step, chunk, x, target, base) * (x - base)


@register("deeplift_rescale", needs_baseline=True, completeness=True)
def deeplift_rescale(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, baseline: torch.Tensor | None = None,
    subtract_class_mean: bool = False, batch_size: int | None = None,
) -> torch.Tensor:
    """DeepLIFT-Rescale contributions to the target logit w.r.t. a baseline (zeros)."""
    return deeplift(model, x, target, rule="rescale", baseline=baseline, subtract_class_mean=subtract_class_mean,
                    batch_size=batch_size)


@register("deeplift_revealcancel", needs_baseline=True, completeness=True)
def deeplift_revealcancel(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, baseline: torch.Tensor | None = None,
    subtract_class_mean: bool = False, batch_size: int | None = None,
) -> torch.Tensor:
    """DeepLIFT-RevealCancel contributions to the target logit w.r.t. a baseline (zeros): positive and
    negative parts of each nonlinearity's input difference propagated separately."""
    return deeplift(model, x, target, rule="revealcancel", baseline=baseline,
                    subtract_class_mean=subtract_class_mean, batch_size=batch_size)
