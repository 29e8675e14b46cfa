"""Chapter 04_hardness: the losses' gradients with respect to the scores, by sympy.

:func:`gradient_table` and :func:`gradient_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from .framework import Step
from .symbols import LAM_SYM, _softplus

# --------------------------------------------------------------------------------------------------
# Chapter 04_hardness: gradients with respect to the scores (N = 3 negatives written out)
# --------------------------------------------------------------------------------------------------

POS_SYM = sp.Symbol("s^+", real=True)
NEG_SYMS = sp.symbols("s_1:4", real=True)
TAU_SYM = sp.Symbol("tau", positive=True)
EPS_SYM = sp.Symbol("epsilon", nonnegative=True)
WEIGHT_SYM = sp.Symbol("w", positive=True)
MARGIN_SYM = sp.Symbol("m", real=True)
GRADIENT_ARGS = (POS_SYM, *NEG_SYMS, TAU_SYM, LAM_SYM, EPS_SYM, WEIGHT_SYM, MARGIN_SYM)


def _row_losses() -> dict[str, sp.Expr]:
    """Row losses of the spec with N = 3 negatives, in the scores s+, s_1..s_3 (not divided by tau)."""
    a = POS_SYM / TAU_SYM
    exps = [sp.exp(s / TAU_SYM) for s in NEG_SYMS]
    count = len(NEG_SYMS)
    return {
        "infonce": -a + sp.log(sp.exp(a) + sum(exps)),
        "infonce+": -a + LAM_SYM * sp.log(EPS_SYM * sp.exp(a) + sum(exps)),
        "mine+": -a + LAM_SYM * sp.log(sum(exps) / count),
        "bpr": sum(_softplus(s / TAU_SYM - a) for s in NEG_SYMS),
        "mse": (POS_SYM - 1) ** 2 + WEIGHT_SYM * sum(s**2 for s in NEG_SYMS) / count,
        "ccl": sp.Max(0, 1 - POS_SYM) + WEIGHT_SYM * sum(sp.Max(0, s - MARGIN_SYM) for s in NEG_SYMS) / count,
    }


@dataclass(frozen=True)
class GradientRow:
    """One loss's gradients (N = 3 negatives): d/ds_1, d/ds+, and the balance d/ds+ + sum_j d/ds_j.

    Chapter 04_hardness.
    """

    name: str
    loss: sp.Expr
    d_negative: sp.Expr
    d_positive: sp.Expr
    balance: sp.Expr

    def _evaluate(self, expr: sp.Expr, pos: np.ndarray, neg: np.ndarray, params: dict[str, float]) -> np.ndarray:
        values = {"tau": 1.0, "lam": 1.0, "eps": 1.0, "neg_weight": 1.0, "margin": 0.0, **params}
        function = sp.lambdify(GRADIENT_ARGS, expr, modules="numpy")
        pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
        if pos.ndim != 1 or neg.shape != (len(pos), len(NEG_SYMS)):
            raise ValueError(f"GradientRow: pos must be (B,) and neg (B, 3), got {pos.shape} and {neg.shape}")
        result = function(
            pos,
            neg[:, 0],
            neg[:, 1],
            neg[:, 2],
            values["tau"],
            values["lam"],
            values["eps"],
            values["neg_weight"],
            values["margin"],
        )
        return np.broadcast_to(np.asarray(result, dtype=np.float64), pos.shape).copy()

    def negative_gradient(self, pos: np.ndarray, neg: np.ndarray, **params: float) -> np.ndarray:
        """d loss / d neg[:, 0] in numpy: pos (B,), neg (B, 3) -> (B,).

        ``params`` are the loss's parameters by the spec's names (tau, lam, eps, neg_weight, margin).
        """
        return self._evaluate(self.d_negative, pos, neg, params)

    def positive_gradient(self, pos: np.ndarray, neg: np.ndarray, **params: float) -> np.ndarray:
        """d loss / d pos in numpy: pos (B,), neg (B, 3) -> (B,)."""
        return self._evaluate(self.d_positive, pos, neg, params)


def gradient_table() -> list[GradientRow]:
    """The gradients of infonce, infonce+, mine+, bpr, mse and ccl by sympy (chapter 04_hardness).

    The negative gradient is that of the first negative s_1; the others are the same function of their own
    score. CCL's relu differentiates to a Heaviside step.
    """
    rows = []
    for name, loss in _row_losses().items():
        d_negative = sp.simplify(sp.diff(loss, NEG_SYMS[0]))
        d_positive = sp.diff(loss, POS_SYM)  # left as a sum: simplifying BPR's takes sympy ~20 s
        balance = sp.simplify(d_positive + sum(sp.diff(loss, s) for s in NEG_SYMS))
        rows.append(GradientRow(name, loss, d_negative, d_positive, balance))
    return rows


def gradient_steps() -> list[Step]:
    """The statements of chapter 04_hardness as verifiable steps (HDCCF, Yang et al. 2022, eqs. (3)-(4))."""
    losses = _row_losses()
    a = POS_SYM / TAU_SYM
    exps = [sp.exp(s / TAU_SYM) for s in NEG_SYMS]
    softmax_weight = exps[0] / (sp.exp(a) + sum(exps))
    plus_weight = exps[0] / (EPS_SYM * sp.exp(a) + sum(exps))
    mine_weight = exps[0] / sum(exps)

    def grad(name: str, symbol: sp.Symbol) -> sp.Expr:
        return sp.diff(losses[name], symbol)

    def balance(name: str) -> sp.Expr:
        return grad(name, POS_SYM) + sum(grad(name, s) for s in NEG_SYMS)

    return [
        Step(
            "InfoNCE: a negative's gradient is its softmax weight over the positive and all negatives, "
            "divided by tau (HDCCF eqs. (3)-(4)), so it grows like $e^{s_1/\\tau}$",
            grad("infonce", NEG_SYMS[0]),
            "=",
            softmax_weight / TAU_SYM,
        ),
        Step(
            "InfoNCE: the positive's gradient is minus the sum of the negatives' (HDCCF's second property)",
            balance("infonce"),
            "=",
            sp.Integer(0),
        ),
        Step(
            "InfoNCE+: lambda scales the weights and epsilon the positive's share of the denominator",
            grad("infonce+", NEG_SYMS[0]),
            "=",
            LAM_SYM * plus_weight / TAU_SYM,
        ),
        Step(
            "InfoNCE+: the balance is off by $(\\lambda - 1)/\\tau$ whatever epsilon is",
            balance("infonce+"),
            "=",
            (LAM_SYM - 1) / TAU_SYM,
        ),
        Step(
            "MINE+: the weights are a softmax over the negatives only",
            grad("mine+", NEG_SYMS[0]),
            "=",
            LAM_SYM * mine_weight / TAU_SYM,
        ),
        Step(
            "BPR: each negative is weighted by its own sigmoid, independently of the others",
            grad("bpr", NEG_SYMS[0]),
            "=",
            1 / (TAU_SYM * (1 + sp.exp((POS_SYM - NEG_SYMS[0]) / TAU_SYM))),
        ),
        Step("BPR: balanced like InfoNCE", balance("bpr"), "=", sp.Integer(0)),
        Step(
            "MSE: the gradient grows linearly with the score",
            grad("mse", NEG_SYMS[0]),
            "=",
            2 * WEIGHT_SYM * NEG_SYMS[0] / len(NEG_SYMS),
        ),
        Step(
            "CCL: a step at the margin: zero below it, w/N above it",
            grad("ccl", NEG_SYMS[0]),
            "=",
            WEIGHT_SYM * sp.Heaviside(NEG_SYMS[0] - MARGIN_SYM) / len(NEG_SYMS),
        ),
    ]
