"""Every loss of the contract the papers chapter 02_losses cites: pure functions on score tensors, behind one registry.

A loss sees, for each row b of a batch, the score ``pos[b]`` of an observed (user, item) pair and the scores
``neg[b, j]`` of its N sampled negatives. With ``a = s+ / tau`` and ``b_j = s_j / tau`` every loss is one of
two forms (chapter 02_losses):

* exp family (``softmax``, ``infonce``, ``infonce+``, ``dcl``, ``mine``, ``mine+``):
  ``-a + lam * log(eps * e^a + C * E_j[e^{b_j}])`` with C = N or 1, evaluated in the log domain;
* plain family (``bpr``, ``mse``, ``ccl``): ``positive(s+) + weight * E_j[phi(s_j)]``.

Debiasing (``tau_plus > 0``, chapter 05_debiasing) replaces the negative mean E_j[phi] by the
positive-unlabeled estimate ``D[phi] = max(floor, (E_j[phi(s_j)] - tau_plus * phi(s+)) / (1 - tau_plus))``
of Chuang et al. 2020 (arXiv 2007.00224, Sec. 3) with the row's own positive as the single positive sample
(M = 1).

Use :func:`make` to get a configured loss, :func:`names` for the registry, :func:`defaults` for the default
parameters (the table :data:`DEFAULTS`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Default parameters of every base loss, in one table. tau = 1.0 for bpr (classic BPR on raw scores);
# tau = 0.1 for the exp family, the usual temperature for cosine similarities (BSL, arXiv 2312.12882, tunes
# t1 in 0.08-0.14); infonce+ / mine+ use Li & Jin's reported best eps = 0, lam = 1.1; ccl uses SimpleX's
# published Gowalla / Yelp2018 setting (margin 0.9, negative weight 150); mse weighs negatives and positive
# equally.
_BASE_DEFAULTS: dict[str, dict[str, float]] = {
    "bpr": {"tau": 1.0, "tau_plus": 0.0},
    "softmax": {"tau": 0.1, "tau_plus": 0.0},
    "infonce": {"tau": 0.1, "tau_plus": 0.0},
    "infonce+": {"tau": 0.1, "eps": 0.0, "lam": 1.1, "tau_plus": 0.0},
    "dcl": {"tau": 0.1, "tau_plus": 0.0},
    "mine": {"tau": 0.1, "tau_plus": 0.0},
    "mine+": {"tau": 0.1, "lam": 1.1, "tau_plus": 0.0},
    "mse": {"neg_weight": 1.0, "tau_plus": 0.0},
    "ccl": {"margin": 0.9, "neg_weight": 150.0, "tau_plus": 0.0},
}
# Convenience names: the base loss with debiasing switched on (tau_plus required > 0).
_DEBIASED_BASES = ("infonce", "mine+", "mse", "ccl")
DEBIASED_TAU_PLUS = 0.1
DEFAULTS: dict[str, dict[str, float]] = {
    **_BASE_DEFAULTS,
    **{f"debiased-{base}": {**_BASE_DEFAULTS[base], "tau_plus": DEBIASED_TAU_PLUS} for base in _DEBIASED_BASES},
}

# Allowed range of each parameter: (low, high, low included, high included).
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "tau": (0.0, math.inf, False, False),
    "lam": (0.0, math.inf, False, False),
    "eps": (0.0, math.inf, True, False),
    "neg_weight": (0.0, math.inf, False, False),
    "margin": (-1.0, 1.0, True, True),
    "tau_plus": (0.0, 1.0, True, False),
}
_DEBIASED_TAU_PLUS_RANGE = (0.0, 1.0, False, False)
REDUCTIONS = ("mean", "none", "sum")
_LOG_Q_ARGS = ("log_q_pos", "log_q_neg")


@dataclass(frozen=True)
class _ExpForm:
    """``-a + lam * log(eps * e^a + C * D[e^b])``, C = N if ``count_negatives`` else 1; D's floor: e^{-1/tau}.

    ``fixed`` holds the values of eps / lam that the name fixes; the others are public parameters.
    ``log_q``: the logits are corrected by the log sampling probabilities
    (``a - log_q_pos``, ``b - log_q_neg``).
    """

    fixed: dict[str, float]
    count_negatives: bool
    log_q: bool = False


@dataclass(frozen=True)
class _PlainForm:
    """``positive(s+) + weight * D[phi(s)]``, D's floor: 0; ``phi(scores, pos, params)``: (B, K) -> (B, K)."""

    positive: Callable[[Tensor, dict[str, float]], Tensor]
    phi: Callable[[Tensor, Tensor, dict[str, float]], Tensor]
    weight: Callable[[dict[str, float], int], float]
    phi_uses_positive: bool = False


def _bpr_phi(scores: Tensor, pos: Tensor, params: dict[str, float]) -> Tensor:
    # softplus(b_j - a) as -logsigmoid(a - b_j): exact, where F.softplus switches to x above a threshold
    return -F.logsigmoid((pos[:, None] - scores) / params["tau"])


_FORMS: dict[str, _ExpForm | _PlainForm] = {
    "bpr": _PlainForm(
        positive=lambda pos, params: torch.zeros_like(pos),
        phi=_bpr_phi,
        weight=lambda params, num_negatives: float(num_negatives),
        phi_uses_positive=True,
    ),
    "softmax": _ExpForm(fixed={"eps": 1.0, "lam": 1.0}, count_negatives=True, log_q=True),
    "infonce": _ExpForm(fixed={"eps": 1.0, "lam": 1.0}, count_negatives=True),
    "infonce+": _ExpForm(fixed={}, count_negatives=True),
    "dcl": _ExpForm(fixed={"eps": 0.0, "lam": 1.0}, count_negatives=True),
    "mine": _ExpForm(fixed={"eps": 0.0, "lam": 1.0}, count_negatives=False),
    "mine+": _ExpForm(fixed={"eps": 0.0}, count_negatives=False),
    "mse": _PlainForm(
        positive=lambda pos, params: (pos - 1.0) ** 2,
        phi=lambda scores, pos, params: scores**2,
        weight=lambda params, num_negatives: params["neg_weight"],
    ),
    "ccl": _PlainForm(
        positive=lambda pos, params: F.relu(1.0 - pos),
        phi=lambda scores, pos, params: F.relu(scores - params["margin"]),
        weight=lambda params, num_negatives: params["neg_weight"],
    ),
}

# The taxonomy, exported for the rest of the package (presets, plans, plots, widgets read it from here).
BASE_LOSSES: tuple[str, ...] = tuple(_BASE_DEFAULTS)
"""Every base loss, in the book's order; each ``debiased-<base>`` of :data:`DEBIASED_BASES` is also registered."""
EXP_FAMILY: tuple[str, ...] = tuple(name for name, form in _FORMS.items() if isinstance(form, _ExpForm))
"""The losses of the form ``-a + lam log(eps e^a + C D[e^b])`` on logits s / tau: the ones with a temperature."""
DEBIASED_BASES: tuple[str, ...] = _DEBIASED_BASES
SAMPLED = tuple(name for name in BASE_LOSSES if name != "bpr")
"""The losses trained with many negatives per positive (the contrastive family, MSE and CCL); BPR takes one."""


def base_loss(name: str) -> str:
    """The base loss of a registered name: ``debiased-mine+`` -> ``mine+`` (chapter 05_debiasing)."""
    _spec(name)  # unknown names fail here, with the registry's message
    return name.removeprefix("debiased-")


_LI_JIN = "Li & Jin, arXiv 2312.08517 / 2312.08520"
_STANDARD = (
    "The Li & Jin text could not be read for this project; the formula is the standard one their summaries "
    "describe, so no equation number is cited."
)
_FORMULAS: dict[str, str] = {
    "bpr": (
        "BPR: loss_b = sum_j softplus(b_j - a) = N * E_j[softplus(b_j - a)], a = s+/tau, b_j = s_j/tau.\n"
        "Source: Rendle et al. 2009 (arXiv 1205.2618, BPR-Opt, Sec. 4.1) with N sampled negatives as in "
        f"{_LI_JIN}; tau = 1 is classic BPR. {_STANDARD}\n"
        "Debiasing: phi = softplus(b_j - a), phi(s+) = log 2, floor 0."
    ),
    "softmax": (
        "Sampled softmax with log-Q correction: loss_b = -(a - lq+) + logsumexp(a - lq+, b_1 - lq_1, ..., "
        "b_N - lq_N), a = s+/tau, b_j = s_j/tau, lq = log sampling probability.\n"
        "Source: Jean et al. 2015 (arXiv 1412.2007, Sec. 3, importance-sampling correction); the softmax "
        f"loss of {_LI_JIN}. Call with keyword tensors log_q_pos (B,) and log_q_neg (B, N); both default to "
        "zeros, "
        "and then the loss equals infonce.\n"
        "Debiasing: as infonce, on the corrected logits (floor e^{-1/tau})."
    ),
    "infonce": (
        "InfoNCE: loss_b = -a + log(e^a + N * E_j[e^{b_j}]), a = s+/tau, b_j = s_j/tau.\n"
        "Source: Chuang et al. 2020 (arXiv 2007.00224, eq. (1)); van den Oord et al. 2018 "
        "(arXiv 1807.03748). "
        "Debiased: -a + log(e^a + N * D[e^b]) with clamp N e^{-1/tau}, exactly Chuang et al.'s debiased "
        "objective (Sec. 3) with M = 1.\n"
        "Debiasing: phi = e^b, floor e^{-1/tau}."
    ),
    "infonce+": (
        "InfoNCE+: loss_b = -a + lam * log(eps * e^a + N * E_j[e^{b_j}]), a = s+/tau, b_j = s_j/tau.\n"
        f"Source: {_LI_JIN} (InfoNCE+; they report eps = 0, lam = 1.1 as best, the defaults here). eps = 1, "
        f"lam = 1 gives infonce; eps = 0 gives mine+ + lam log N. {_STANDARD}\n"
        "Debiasing: phi = e^b, floor e^{-1/tau}."
    ),
    "dcl": (
        "Decoupled contrastive loss: loss_b = -a + log(N * E_j[e^{b_j}]) = -a + logsumexp_j(b_j), i.e. "
        "infonce+ with eps = 0, lam = 1; equals mine + log N.\n"
        "Source: Yeh et al. 2022 (arXiv 2110.06848, the decoupled loss without the positive in the "
        f"denominator), as discussed in {_LI_JIN}.\n"
        "Debiasing: phi = e^b, floor e^{-1/tau}."
    ),
    "mine": (
        "MINE: loss_b = -a + log E_j[e^{b_j}], a = s+/tau, b_j = s_j/tau (the Donsker-Varadhan bound of "
        "Belghazi et al. 2018, arXiv 1801.04062, with sampled negatives as the product of marginals).\n"
        f"Source: {_LI_JIN} (MINE loss). {_STANDARD}\n"
        "Debiasing: phi = e^b, floor e^{-1/tau}; debiased: -a + log D[e^b]."
    ),
    "mine+": (
        "MINE+: loss_b = -a + lam * log E_j[e^{b_j}], a = s+/tau, b_j = s_j/tau.\n"
        f"Source: {_LI_JIN} (MINE+; lam = 1.1 to 1.2 reported best). {_STANDARD}\n"
        "Debiasing: phi = e^b, floor e^{-1/tau}; debiased: -a + lam * log D[e^b]."
    ),
    "mse": (
        "Pointwise MSE: loss_b = (s+ - 1)^2 + neg_weight * E_j[s_j^2] (raw scores, no temperature).\n"
        f"Source: {_LI_JIN} (MSE and its debiased form; iALS / EASE are its full-matrix versions). "
        f"{_STANDARD}\n"
        "Debiasing: phi = s^2, floor 0; debiased: (s+ - 1)^2 + neg_weight * D[s^2]."
    ),
    "ccl": (
        "Cosine contrastive loss: loss_b = relu(1 - s+) + neg_weight * E_j[relu(s_j - margin)] (raw scores, "
        "meant for cosine similarities; relu(1 - s+) = 1 - s+ there).\n"
        "Source: SimpleX, Mao et al. 2021 (arXiv 2109.12613, the CCL loss, Sec. 3); debiased form from "
        f"{_LI_JIN}. {_STANDARD}\n"
        "Debiasing: phi = relu(s - margin), floor 0; debiased: relu(1 - s+) + neg_weight * "
        "D[relu(s - margin)]."
    ),
}
_CALL_DOC = (
    "Call: fn(pos, neg, reduction='mean'), pos (B,) the observed pairs' scores, neg (B, N) their N sampled "
    "negatives' scores (floating tensors, same dtype and device); returns the mean or sum over rows "
    "(scalar) or, with reduction='none', the (B,) row losses. Differentiable in pos and neg; finite for "
    "scores in [-1e4, 1e4] and tau down to 0.01. float16 / bfloat16 scores are computed in float32 and the "
    "loss is returned in float32. NaN or inf in pos, neg (or log_q_*) raises ValueError naming the tensor "
    "and the count, unless the loss was made with check_finite=False.\n"
    "tau_plus > 0 replaces E_j[phi] by "
    "D[phi] = max(floor, (E_j[phi(s_j)] - tau_plus * phi(s+)) / (1 - tau_plus)) "
    "(Chuang et al. 2020, arXiv 2007.00224, Sec. 3, M = 1: the row's own positive).\n"
    "Taught in chapter 02_losses (debiasing: 05_debiasing)."
)


@dataclass(frozen=True)
class _Spec:
    base: str
    defaults: dict[str, float]
    doc: str
    tau_plus_range: tuple[float, float, bool, bool] = field(default=_RANGES["tau_plus"])


def _spec(name: str) -> _Spec:
    if name not in DEFAULTS:
        raise ValueError(f"unknown loss {name!r}; registered losses: {', '.join(names())}")
    if name.startswith("debiased-"):
        base = name.removeprefix("debiased-")
        doc = (
            f"{name}: {base} with debiasing on (tau_plus default {DEBIASED_TAU_PLUS}, required in (0, 1)); "
            f"equals make({base!r}, tau_plus=...).\n{_FORMULAS[base]}\n{_CALL_DOC}"
        )
        return _Spec(base, DEFAULTS[name], doc, _DEBIASED_TAU_PLUS_RANGE)
    return _Spec(name, DEFAULTS[name], f"{name}: {_FORMULAS[name]}\n{_CALL_DOC}")


def names() -> list[str]:
    """Every registered loss name, sorted (chapter 02_losses)."""
    return sorted(DEFAULTS)


def defaults(name: str) -> dict[str, float]:
    """The default parameters of loss ``name`` (a copy of its row of :data:`DEFAULTS`; chapter 02_losses)."""
    return dict(_spec(name).defaults)


def _interval(bounds: tuple[float, float, bool, bool]) -> str:
    low, high, low_in, high_in = bounds
    return f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def _check_param(loss: str, param: str, value: Any, bounds: tuple[float, float, bool, bool]) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"loss {loss!r}: parameter {param}={value!r} must be a real number in {_interval(bounds)}")
    low, high, low_in, high_in = bounds
    value = float(value)
    above_low = value >= low if low_in else value > low
    below_high = value <= high if high_in else value < high
    if not (above_low and below_high):  # NaN fails both comparisons
        raise ValueError(f"loss {loss!r}: parameter {param}={value!r} out of range; allowed: {_interval(bounds)}")
    return value


_HALF = (torch.float16, torch.bfloat16)


class Loss:
    """A configured loss of the registry, made by :func:`make`; its docstring is the loss's own (02_losses).

    Attributes: ``name`` (registered name), ``params`` (every parameter, defaults filled in) and
    ``check_finite`` (whether a call refuses NaN / inf scores; see :func:`make`).
    """

    def __init__(self, name: str, params: dict[str, float], spec: _Spec, check_finite: bool = True) -> None:
        self.name = name
        self._params = dict(params)
        self._spec = spec
        self.check_finite = check_finite
        self.__doc__ = spec.doc

    @property
    def params(self) -> dict[str, float]:
        return dict(self._params)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._params.items())
        unchecked = "" if self.check_finite else ", check_finite=False"
        return f"losses.make({self.name!r}, {args}{unchecked})"

    def __call__(self, pos: Tensor, neg: Tensor, reduction: str = "mean", **extra: Tensor) -> Tensor:
        """The single entry point of every loss: checks the inputs, upcasts half precision, reduces."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"loss {self.name!r}: reduction={reduction!r}; allowed: {', '.join(REDUCTIONS)}")
        _check_scores(self.name, pos, neg)
        log_q = _log_q(self.name, self._spec.base, pos, neg, extra)
        if self.check_finite:
            _check_finite(self.name, {"pos": pos, "neg": neg, **extra})
        if pos.dtype in _HALF:  # e^a, s^2 and 1 / tau overflow half precision long before |s| = 1e4
            pos, neg = pos.float(), neg.float()
            log_q = None if log_q is None else (log_q[0].float(), log_q[1].float())
        rows = _row_losses(self._spec.base, self._params, pos, neg, log_q)
        if reduction == "none":
            return rows
        return rows.mean() if reduction == "mean" else rows.sum()


def make(name: str, *, check_finite: bool = True, **params: float) -> Loss:
    """Return the loss ``name`` configured with ``params`` (others take their :data:`DEFAULTS`).

    The result is called as ``fn(pos (B,), neg (B, N), reduction='mean'|'none'|'sum', **extra)``; ``extra`` is
    only ``log_q_pos`` (B,) / ``log_q_neg`` (B, N) for ``softmax``. Unknown name, unknown parameter or a value
    out of range raise ValueError naming it and what is allowed. Formulas: the papers chapter 02_losses cites; chapter
    02_losses.

    Every call checks that its tensors are finite (one ``torch.isfinite(...).all()``, which waits for the
    device) and raises ValueError naming the tensor and how many entries are NaN or inf. A trusted caller that
    checks its results itself (the training engine watches each epoch's mean loss) may pass
    ``check_finite=False`` (or set the ``check_finite`` attribute) to skip it; non-finite scores then give
    non-finite losses. float16 / bfloat16 scores are computed, and the loss returned, in float32.
    """
    spec = _spec(name)
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"loss {name!r}: unknown parameter(s) {', '.join(unknown)}; its parameters: {', '.join(spec.defaults)}"
        )
    checked = {
        param: _check_param(
            name,
            param,
            params.get(param, default),
            spec.tau_plus_range if param == "tau_plus" else _RANGES[param],
        )
        for param, default in spec.defaults.items()
    }
    return Loss(name, checked, spec, check_finite=bool(check_finite))


def _describe(tensor: Any) -> str:
    if not isinstance(tensor, Tensor):
        return type(tensor).__name__
    return f"shape {tuple(tensor.shape)}, {tensor.dtype}, {tensor.device}"


def _check_scores(name: str, pos: Any, neg: Any) -> None:
    if not isinstance(pos, Tensor) or not isinstance(neg, Tensor):
        raise ValueError(
            f"loss {name!r}: pos and neg must be torch tensors; got pos {_describe(pos)}, neg {_describe(neg)}"
        )
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0] or neg.shape[1] == 0:
        raise ValueError(
            f"loss {name!r}: pos must be (B,) and neg (B, N) with N >= 1; "
            f"got pos {tuple(pos.shape)}, neg {tuple(neg.shape)}"
        )
    if not pos.is_floating_point() or pos.dtype != neg.dtype or pos.device != neg.device:
        raise ValueError(
            f"loss {name!r}: pos and neg must be floating tensors of one dtype on one device; "
            f"got pos {_describe(pos)}, neg {_describe(neg)}"
        )


def _check_finite(name: str, tensors: dict[str, Tensor]) -> None:
    """ValueError naming the first of ``tensors`` holding NaN or inf and its count (one sync when all are
    finite)."""
    if bool(torch.stack([torch.isfinite(tensor).all() for tensor in tensors.values()]).all()):
        return
    for what, tensor in tensors.items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(
                f"loss {name!r}: {what} holds {bad} non-finite entries (NaN or inf) of {tensor.numel()} "
                f"(shape {tuple(tensor.shape)})"
            )


def _log_q(name: str, base: str, pos: Tensor, neg: Tensor, extra: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
    """The softmax's (log_q_pos (B,), log_q_neg (B, N)), zeros where omitted; None for the other losses."""
    form = _FORMS[base]
    allowed = _LOG_Q_ARGS if isinstance(form, _ExpForm) and form.log_q else ()
    unknown = sorted(set(extra) - set(allowed))
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no extra arguments"
        raise ValueError(f"loss {name!r} {takes}; got {', '.join(unknown)}")
    if not allowed:
        return None
    log_q_pos = extra.get("log_q_pos", torch.zeros_like(pos))
    log_q_neg = extra.get("log_q_neg", torch.zeros_like(neg))
    for arg, value, like in (("log_q_pos", log_q_pos, pos), ("log_q_neg", log_q_neg, neg)):
        if (
            not isinstance(value, Tensor)
            or value.shape != like.shape
            or value.dtype != like.dtype
            or (value.device != like.device)
        ):
            raise ValueError(f"loss {name!r}: {arg} must match {_describe(like)}; got {_describe(value)}")
    return log_q_pos, log_q_neg


def log_debiased_mean(log_mean: Tensor, log_pos_mean: Tensor, weight: float, log_floor: float) -> Tensor:
    """The positive-unlabeled estimate of a negative mean, in the log domain, per row: (B,), (B,) -> (B,),

        log max(e^{log_floor}, (e^{log_mean} - weight e^{log_pos_mean}) / (1 - weight)),   0 < weight < 1,

    Chuang et al. 2020's estimator (weight = tau_plus; HDCCF's eqs. (15)-(16) use it with weight = omega^+ and
    the clamp Q e^{-1/tau}). The clamped rows, and rows whose ``log_mean`` is -inf (an empty mean), take the constant
    branch of a double ``where`` so that neither value nor gradient is ever NaN. Chapters 05_debiasing, 10_hdccf.
    """
    log_pos_part = math.log(weight) + log_pos_mean
    # estimate > floor  <=>  e^m > weight e^p + (1 - weight) e^{log_floor}
    above_floor = log_mean > torch.logaddexp(log_pos_part, torch.full_like(log_mean, math.log1p(-weight) + log_floor))
    gap = torch.where(above_floor, log_pos_part - log_mean, -1.0)  # < 0 on the rows that use it
    safe_mean = torch.where(above_floor, log_mean, 0.0)
    unclamped = safe_mean + torch.log(-torch.expm1(gap)) - math.log1p(-weight)
    return torch.where(above_floor, unclamped, log_floor)


class _ScaledLogSumExp(torch.autograd.Function):
    """log sum_j e^{scale x_j} per row of a finite (B, N) matrix, scale > 0: (B,), the logsumexp of every
    exp-family loss. Four passes over the matrix forward and one backward, where ``torch.logsumexp(x * scale, 1)``
    under autograd takes nine: the exponentials of the forward are kept, and the backward is their product with
    the row's factor. On many shared negatives this part outweighs the score product itself."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        top = x.amax(dim=1, keepdim=True)
        weights = torch.add(top * -scale, x, alpha=scale).exp_()  # e^{scale (x_j - max)}, in (0, 1]
        total = weights.sum(dim=1)
        ctx.save_for_backward(weights, total)
        ctx.scale = scale
        return top.squeeze(1) * scale + total.log()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        weights, total = ctx.saved_tensors
        return weights * (grad * ctx.scale / total).unsqueeze(1), None  # scale * softmax(scale x) * grad


def _log_sum_exp(neg: Tensor, tau: float, log_q_neg: Tensor | None) -> Tensor:
    """log sum_j e^{s_j / tau - log q_j} per row, (B, N) -> (B,): the fused :class:`_ScaledLogSumExp` without a
    log-Q correction, torch's logsumexp with one (or with no negatives)."""
    if log_q_neg is None and neg.shape[1] > 0:
        return _ScaledLogSumExp.apply(neg, 1.0 / tau)
    logits = neg / tau if log_q_neg is None else neg / tau - log_q_neg
    return torch.logsumexp(logits, dim=1)


def _log_negative_mean(
    log_sum: Tensor, num_negatives: int, logit_pos: Tensor, tau_plus: float, log_floor: float
) -> Tensor:
    """log E_j[e^{b_j}] (tau_plus = 0) or log D[e^b] (tau_plus > 0, :func:`log_debiased_mean`) per row, from
    ``log_sum`` = log sum_j e^{b_j} (B,) of ``num_negatives`` negatives and the positive's logit (B,) -> (B,).
    Chapter 05_debiasing."""
    log_mean = log_sum - math.log(num_negatives)
    if tau_plus == 0.0:
        return log_mean
    return log_debiased_mean(log_mean, logit_pos, tau_plus, log_floor)


def _negative_mean(phi_neg: Tensor, phi_pos: Tensor | None, tau_plus: float) -> Tensor:
    """E_j[phi(s_j)] (tau_plus = 0) or D[phi], floor 0 (tau_plus > 0, which needs ``phi_pos``): (B, N), (B,) ->
    (B,). Chapter 05."""
    mean = phi_neg.mean(dim=1)
    if tau_plus == 0.0:
        return mean
    assert phi_pos is not None, "the debiased mean needs phi of the positive"
    return torch.clamp_min((mean - tau_plus * phi_pos) / (1.0 - tau_plus), 0.0)


def _row_losses(
    base: str, params: dict[str, float], pos: Tensor, neg: Tensor, log_q: tuple[Tensor, Tensor] | None
) -> Tensor:
    """Per-row losses (B,) of the base loss ``base``: the one implementation behind every name."""
    form = _FORMS[base]
    tau_plus = params["tau_plus"]
    num_negatives = neg.shape[1]
    if isinstance(form, _PlainForm):
        phi_neg = form.phi(neg, pos, params)
        phi_pos = form.phi(pos[:, None], pos, params)[:, 0] if tau_plus > 0.0 else None  # only the debiased use it
        negative_part = _negative_mean(phi_neg, phi_pos, tau_plus)
        return form.positive(pos, params) + form.weight(params, num_negatives) * negative_part
    values = {**params, **form.fixed}
    logit_pos = pos / values["tau"]
    if log_q is not None:  # Jean et al. 2015: subtract the log sampling probability from each logit
        logit_pos = logit_pos - log_q[0]
    log_sum = _log_sum_exp(neg, values["tau"], None if log_q is None else log_q[1])
    log_negative = _log_negative_mean(log_sum, num_negatives, logit_pos, tau_plus, -1.0 / values["tau"])
    if form.count_negatives:
        log_negative = log_negative + math.log(num_negatives)
    if values["eps"] > 0.0:
        log_negative = torch.logaddexp(logit_pos + math.log(values["eps"]), log_negative)
    return values["lam"] * log_negative - logit_pos


def negative_gradients(name: str, pos: Tensor, neg: Tensor, **params: float) -> Tensor:
    """d loss_b / d neg[b, j] of loss ``name`` (made with ``params``) by autograd: (B,), (B, N) -> (B, N).

    Row b's gradient is that of its own row loss (reduction 'sum'), so it shows how hard each negative is
    pushed down. Chapter 04_hardness.
    """
    fn = make(name, check_finite=True, **params)
    neg = neg.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(pos.detach(), neg, reduction="sum"), neg)
    return grad


def _gaussian_phi_mean(kind: str, mean: float, std: float, tau: float, margin: float) -> float:
    """E[phi(s)] for s ~ N(mean, std^2), in closed form."""
    if kind == "exp":
        return math.exp(mean / tau + std**2 / (2.0 * tau**2))
    if kind == "mse":
        return mean**2 + std**2
    z = (mean - margin) / std  # ccl: E[relu(s - margin)]
    return (mean - margin) * 0.5 * math.erfc(-z / math.sqrt(2.0)) + std * math.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


def debiasing_monte_carlo(
    tau_plus_true: float,
    tau_plus: float | None = None,
    *,
    loss: str = "infonce",
    num_negatives: int = 32,
    num_trials: int = 2000,
    tau: float = 0.5,
    margin: float = 0.0,
    pos_mean: float = 0.6,
    neg_mean: float = 0.0,
    std: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Monte-Carlo check of the negative-part estimators of ``loss`` under sampling bias (05_debiasing).

    Scores of true negatives are N(neg_mean, std^2), of positives N(pos_mean, std^2). Each trial draws one
    positive score s+ and ``num_negatives`` sampled "negatives", each of which is a hidden positive with
    probability ``tau_plus_true``; it then computes, with phi of the loss (e^{s/tau} for the exp family,
    s^2 for mse, relu(s - margin) for ccl):

    * ``biased``: E_j[phi(s_j)], what the biased loss uses;
    * ``debiased``: (E_j[phi(s_j)] - tau_plus phi(s+)) / (1 - tau_plus), unbiased when
      tau_plus = tau_plus_true (Chuang et al. 2020, arXiv 2007.00224, Sec. 3, M = 1);
    * ``debiased_clamped``: D[phi] as the loss computes it (same library code, with the floor);

    and compares them with ``target`` = E[phi(s-)] over true negatives (closed form). ``tau_plus`` (the value
    the estimator assumes) defaults to ``tau_plus_true``. ``tau`` is used by the exp family, ``margin`` by
    ccl.

    Returns a dict: 'target', 'floor' (floats); 'biased', 'debiased', 'debiased_clamped' (float64 arrays of
    shape (num_trials,)); for each of those three, '<key>_mean', '<key>_std', '<key>_stderr' (floats); and the
    settings 'loss', 'phi', 'tau_plus_true', 'tau_plus', 'num_negatives', 'num_trials'.
    """
    spec = _spec(loss)
    form = _FORMS[spec.base]
    if isinstance(form, _PlainForm) and form.phi_uses_positive:
        raise ValueError(f"loss {loss!r}: its phi depends on the positive score; use an exp-family loss, mse or ccl")
    kind = "exp" if isinstance(form, _ExpForm) else spec.base
    tau_plus_true = _check_param(loss, "tau_plus_true", tau_plus_true, _RANGES["tau_plus"])
    tau_plus = tau_plus_true if tau_plus is None else _check_param(loss, "tau_plus", tau_plus, _RANGES["tau_plus"])
    tau = _check_param(loss, "tau", tau, _RANGES["tau"])
    margin = _check_param(loss, "margin", margin, _RANGES["margin"])
    std = _check_param(loss, "std", std, _RANGES["tau"])
    for what, count in (("num_negatives", num_negatives), ("num_trials", num_trials)):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise ValueError(f"debiasing_monte_carlo: {what}={count!r} must be an integer >= 1")

    rng = np.random.default_rng(seed)
    pos = rng.normal(pos_mean, std, size=num_trials)
    hidden_positive = rng.random((num_trials, num_negatives)) < tau_plus_true
    neg = np.where(
        hidden_positive,
        rng.normal(pos_mean, std, size=(num_trials, num_negatives)),
        rng.normal(neg_mean, std, size=(num_trials, num_negatives)),
    )
    pos_t, neg_t = torch.from_numpy(pos), torch.from_numpy(neg)
    if isinstance(form, _ExpForm):  # kind == "exp"
        phi_neg, phi_pos = torch.exp(neg_t / tau), torch.exp(pos_t / tau)
        log_sum = torch.logsumexp(neg_t / tau, dim=1)
        clamped = torch.exp(_log_negative_mean(log_sum, num_negatives, pos_t / tau, tau_plus, -1.0 / tau))
        floor, phi_text = math.exp(-1.0 / tau), f"exp(s / {tau:g})"
    else:
        params = {"margin": margin}
        phi_neg, phi_pos = form.phi(neg_t, pos_t, params), form.phi(pos_t[:, None], pos_t, params)[:, 0]
        clamped = _negative_mean(phi_neg, phi_pos, tau_plus)
        floor, phi_text = 0.0, "s^2" if kind == "mse" else f"relu(s - {margin:g})"
    biased = phi_neg.mean(dim=1)
    estimates = {
        "biased": biased.numpy(),
        "debiased": ((biased - tau_plus * phi_pos) / (1.0 - tau_plus)).numpy(),
        "debiased_clamped": clamped.numpy(),
    }
    result: dict[str, Any] = {
        "loss": loss,
        "phi": phi_text,
        "tau_plus_true": tau_plus_true,
        "tau_plus": tau_plus,
        "num_negatives": int(num_negatives),
        "num_trials": int(num_trials),
        "target": _gaussian_phi_mean(kind, neg_mean, std, tau, margin),
        "floor": floor,
    }
    for key, values in estimates.items():
        spread = float(values.std(ddof=1)) if num_trials > 1 else 0.0
        result[key] = values
        result[f"{key}_mean"] = float(values.mean())
        result[f"{key}_std"] = spread
        result[f"{key}_stderr"] = spread / math.sqrt(num_trials)
    return result
