"""Chapter 05_debiasing: Chuang et al.'s debiased estimator, derived by sympy (:func:`debiasing_steps`)."""

from __future__ import annotations

import sympy as sp

from .framework import Step, Verdict, increasing_step, is_zero

# --------------------------------------------------------------------------------------------------
# Chapter 05_debiasing: Chuang et al.'s estimator
# --------------------------------------------------------------------------------------------------


def debiasing_steps() -> list[Step]:
    """The positive-unlabeled correction of Chuang et al. 2020 (arXiv 2007.00224, Sec. 3), derived by sympy.

    A uniformly drawn "negative" is a hidden positive with probability tau+, so its phi has mean
    tau+ mu+ + (1 - tau+) mu- (mu+ / mu- = mean of phi over positives / true negatives). The estimator
    D = (mean_j phi(s_j) - tau+ phi(s+)) / (1 - tau+) is unbiased for mu-; its variance grows like
    1 / (1 - tau+)^2; the clamp at phi's lower bound (e^{-1/tau} for cosine scores >= -1) never moves the
    estimate away from mu-. Chapter 05_debiasing.
    """
    tau_plus, tau = sp.Symbol("tau^+", positive=True), sp.Symbol("tau", positive=True)
    mean_pos, mean_neg = sp.symbols("mu^+ mu^-", real=True)
    var_unlabeled, var_pos = sp.symbols("v_u v_+", positive=True)
    noise_unlabeled, noise_pos = sp.symbols("e_u e_+", real=True)
    count = sp.Symbol("N", positive=True, integer=True)
    distance = sp.Symbol("d", nonnegative=True)
    unlabeled_mean = tau_plus * mean_pos + (1 - tau_plus) * mean_neg
    # unevaluated, so that the display shows the correction before sympy cancels it
    estimator_mean = sp.Mul(
        sp.Add(unlabeled_mean, -tau_plus * mean_pos, evaluate=False), sp.Pow(1 - tau_plus, -1), evaluate=False
    )
    # independent zero-mean noises: E[e_u^2] = v_u / N (a mean of N draws), E[e_+^2] = v_+, E[e_u e_+] = 0
    squared = sp.Poly((noise_unlabeled - tau_plus * noise_pos) ** 2, noise_unlabeled, noise_pos)
    second_moments = {(2, 0): var_unlabeled / count, (0, 2): var_pos, (1, 1): 0}
    variance = sum(coeff * second_moments[monom] for monom, coeff in squared.terms()) / (1 - tau_plus) ** 2
    expected_variance = (var_unlabeled / count + tau_plus**2 * var_pos) / (1 - tau_plus) ** 2

    def variance_check() -> Verdict:
        return is_zero(variance - expected_variance)

    return [
        Step(
            "a uniform draw is a positive with probability $\\tau^+$: the mean of $\\phi$ over the draws, "
            "corrected, is the true negatives' mean (unbiased)",
            estimator_mean,
            "=",
            mean_neg,
        ),
        Step(
            "its variance (independent draws; $v_u$, $v_+$ the variances of $\\phi$ over unlabeled and "
            "positive items) grows like $1/(1 - \\tau^+)^2$",
            sp.Symbol(r"\operatorname{Var}[\hat D]"),
            "=",
            expected_variance,
            check=variance_check,
        ),
        increasing_step(
            "the clamp: for cosine scores $s = -1 + d \\ge -1$, $e^{s/\\tau} \\ge e^{-1/\\tau}$, so the true "
            "mean is above the floor and clamping at it can only move an estimate towards the truth",
            sp.exp((distance - 1) / tau) - sp.exp(-1 / tau),
            distance,
            0,
        ),
    ]
