"""Symbolic derivations (sympy) and their float64 numeric checks: bounds, gradients and normal equations.

Modules, by chapter:

* :mod:`.framework`: the claim framework (three-valued verdicts, :class:`Step`, :class:`Claim`, :func:`check`,
  :func:`show`), used by every chapter below;
* :mod:`.references`: numpy float64 references of the spec's losses, the claims' input cases and their numeric
  sides (chapter 03_bounds);
* :mod:`.symbols`: sympy symbols and symbolic losses (chapters 03_bounds and 04_hardness);
* :mod:`.bounds`: chapter 03_bounds, :func:`claims`;
* :mod:`.hardness`: chapter 04_hardness, :func:`gradient_table` and :func:`gradient_steps`;
* :mod:`.debiasing`: chapter 05_debiasing, :func:`debiasing_steps`;
* :mod:`.linear_models`: chapter 06_linear_models, :func:`ials_steps`, :func:`ease_steps` and
  :func:`debiased_mse_steps`.

Imports go framework <- references, symbols <- chapter modules. The public names of every module are re-exported
here: ``from recloss_lite.book import theory; theory.claims()``.
"""

from __future__ import annotations

from .bounds import GAPS, NUM_NEGATIVES_AXIS, PLOT_NUM_NEGATIVES, claims
from .debiasing import debiasing_steps
from .framework import (
    NUMERIC_TOLERANCE,
    RELATIONS,
    Claim,
    ClaimReport,
    Step,
    Verdict,
    check,
    combine,
    convex_minimum_step,
    increasing_step,
    is_zero,
    show,
    verdict_text,
)
from .hardness import (
    EPS_SYM,
    GRADIENT_ARGS,
    MARGIN_SYM,
    NEG_SYMS,
    POS_SYM,
    TAU_SYM,
    WEIGHT_SYM,
    GradientRow,
    gradient_steps,
    gradient_table,
)
from .linear_models import debiased_mse_steps, ease_instance, ease_steps, ials_steps
from .references import (
    DistributionCase,
    JointCase,
    SampleCase,
    ScoreCase,
    bpr,
    distribution_cases,
    donsker_varadhan,
    expected_log_mean_exp,
    infonce,
    infonce_mi_estimate,
    infonce_plus,
    joint_cases,
    kl_divergence,
    log_mean_exp,
    mine,
    mutual_information,
    sample_cases,
    score_cases,
)
from .symbols import A_SYM, B_SYM, J_SYM, LAM_SYM, N_SYM, X_SYM, Z_SYM

__all__ = [
    # framework
    "NUMERIC_TOLERANCE",
    "RELATIONS",
    "Claim",
    "ClaimReport",
    "Step",
    "Verdict",
    "check",
    "combine",
    "convex_minimum_step",
    "increasing_step",
    "is_zero",
    "show",
    "verdict_text",
    # references
    "DistributionCase",
    "JointCase",
    "SampleCase",
    "ScoreCase",
    "bpr",
    "distribution_cases",
    "donsker_varadhan",
    "expected_log_mean_exp",
    "infonce",
    "infonce_mi_estimate",
    "infonce_plus",
    "joint_cases",
    "kl_divergence",
    "log_mean_exp",
    "mine",
    "mutual_information",
    "sample_cases",
    "score_cases",
    # symbols
    "A_SYM",
    "B_SYM",
    "J_SYM",
    "LAM_SYM",
    "N_SYM",
    "X_SYM",
    "Z_SYM",
    # chapter 03_bounds
    "GAPS",
    "NUM_NEGATIVES_AXIS",
    "PLOT_NUM_NEGATIVES",
    "claims",
    # chapter 04_hardness
    "EPS_SYM",
    "GRADIENT_ARGS",
    "MARGIN_SYM",
    "NEG_SYMS",
    "POS_SYM",
    "TAU_SYM",
    "WEIGHT_SYM",
    "GradientRow",
    "gradient_steps",
    "gradient_table",
    # chapter 05_debiasing
    "debiasing_steps",
    # chapter 06_linear_models
    "debiased_mse_steps",
    "ease_instance",
    "ease_steps",
    "ials_steps",
]
