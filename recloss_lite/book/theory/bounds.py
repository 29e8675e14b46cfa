"""The claims of chapter 03_bounds: :func:`claims` and the plots' canonical scenarios.

The papers of Li & Jin (arXiv 2312.08517 / 2312.08520) could only be read as summaries: every statement here
is derived from the loss formulas of the papers chapter 02_losses cites, not copied from their text; each claim's
``source`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import sympy as sp

from .framework import Claim, Step, convex_minimum_step
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
from .symbols import (
    A_SYM,
    B_SYM,
    J_SYM,
    LAM_SYM,
    N_SYM,
    X_SYM,
    Z_SYM,
    _neg_sum,
    _softplus,
    _symbolic_infonce,
    _symbolic_infonce_plus,
    _symbolic_mine,
)

# --------------------------------------------------------------------------------------------------
# The plots' canonical scenarios
# --------------------------------------------------------------------------------------------------

PLOT_NUM_NEGATIVES = 16
GAPS = np.linspace(-4.0, 6.0, 101)
NUM_NEGATIVES_AXIS = np.unique(np.round(np.logspace(0, 3, 31))).astype(int)


def _gap_scenario(gaps: np.ndarray, num_negatives: int = PLOT_NUM_NEGATIVES) -> ScoreCase:
    """Positive score = gap, negatives spread evenly over [-1, 1], tau = 1: one row per gap."""
    neg = np.tile(np.linspace(-1.0, 1.0, num_negatives), (len(gaps), 1))
    return ScoreCase(np.asarray(gaps, dtype=np.float64), neg, 1.0)


def _n_scenario(num_negatives: int, gap: float) -> ScoreCase:
    return _gap_scenario(np.array([gap]), num_negatives)


def _score_sides(
    lhs: Callable[[ScoreCase], np.ndarray], rhs: Callable[[ScoreCase], np.ndarray]
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    def sides(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        case = _gap_scenario(gaps)
        return lhs(case), rhs(case)

    return sides


# --------------------------------------------------------------------------------------------------
# The claims of chapter 03_bounds
# --------------------------------------------------------------------------------------------------

_DERIVED = "derived here from the spec's formulas (Li & Jin state such bounds; their text was not available)."


def _claim_softplus() -> Claim:
    infonce_expr, mine_expr = _symbolic_infonce(), _symbolic_mine()
    x_sum = _neg_sum(sp.exp(B_SYM[J_SYM] - A_SYM))
    steps = (
        Step("divide inside the log by $e^a$", infonce_expr, "=", sp.log(1 + x_sum)),
        Step("$\\log N$ cancels the mean's $1/N$", mine_expr + sp.log(N_SYM), "=", sp.log(x_sum)),
        Step(
            "so InfoNCE is softplus of the shifted MINE",
            infonce_expr,
            "=",
            _softplus(mine_expr + sp.log(N_SYM)),
        ),
    )

    def lhs(case: ScoreCase) -> np.ndarray:
        return infonce(case.pos, case.neg, case.tau)

    def rhs(case: ScoreCase) -> np.ndarray:
        return np.logaddexp(0.0, mine(case.pos, case.neg, case.tau) + math.log(case.neg.shape[1]))

    return Claim(
        "infonce_softplus",
        "InfoNCE is the softplus of MINE shifted by log N.",
        r"\mathcal{L}_{\mathrm{InfoNCE}} = "
        r"\operatorname{softplus}\left(\mathcal{L}_{\mathrm{MINE}} + \log N\right)",
        "=",
        steps,
        lhs,
        rhs,
        score_cases,
        "score gap $s^+ - \\bar s^-$ ($\\tau = 1$, $N = 16$)",
        GAPS,
        _score_sides(lhs, rhs),
        r"$\mathcal{L}_{\mathrm{InfoNCE}}$",
        r"$\operatorname{softplus}(\mathcal{L}_{\mathrm{MINE}} + \log N)$",
        _DERIVED,
    )


def _claim_infonce_ge_mine() -> Claim:
    steps = (
        Step(
            "InfoNCE is softplus(z) with z = MINE + log N (previous claim)",
            _symbolic_infonce(),
            "=",
            _softplus(_symbolic_mine() + sp.log(N_SYM)),
        ),
        Step(
            "softplus(z) - z = log(1 + e^{-z}) > 0 for every real z",
            _softplus(Z_SYM),
            ">=",
            Z_SYM,
            witness=sp.log(1 + sp.exp(-Z_SYM)),
        ),
    )

    def lhs(case: ScoreCase) -> np.ndarray:
        return infonce(case.pos, case.neg, case.tau)

    def rhs(case: ScoreCase) -> np.ndarray:
        return mine(case.pos, case.neg, case.tau) + math.log(case.neg.shape[1])

    return Claim(
        "infonce_ge_mine",
        "InfoNCE is at least MINE + log N; the gap log(1 + e^{-z}) vanishes when the negatives dominate.",
        r"\mathcal{L}_{\mathrm{InfoNCE}} \ge \mathcal{L}_{\mathrm{MINE}} + \log N",
        ">=",
        steps,
        lhs,
        rhs,
        score_cases,
        "score gap $s^+ - \\bar s^-$ ($\\tau = 1$, $N = 16$)",
        GAPS,
        _score_sides(lhs, rhs),
        r"$\mathcal{L}_{\mathrm{InfoNCE}}$",
        r"$\mathcal{L}_{\mathrm{MINE}} + \log N$",
        _DERIVED,
    )


def _claim_infonce_le_bpr() -> Claim:
    partial, new = sp.Symbol("S", nonnegative=True), sp.Symbol("x", positive=True)
    x1, x2, x3 = sp.symbols("x_1:4", positive=True)
    steps = (
        Step(
            "with $x_j = e^{b_j - a} > 0$, BPR is the log of a product",
            _neg_sum(sp.log(1 + X_SYM[J_SYM])),
            "=",
            sp.log(sp.Product(1 + X_SYM[J_SYM], (J_SYM, 1, N_SYM))),
        ),
        Step(
            "induction step: multiplying by $(1 + x)$ adds at least $x$ (S = partial sum of the x_j)",
            (1 + partial) * (1 + new),
            ">=",
            1 + partial + new,
            witness=partial * new,
        ),
        Step(
            "the instance N = 3: the cross terms are positive",
            (1 + x1) * (1 + x2) * (1 + x3),
            ">=",
            1 + x1 + x2 + x3,
            witness=sp.expand((1 + x1) * (1 + x2) * (1 + x3) - 1 - x1 - x2 - x3),
        ),
    )

    def lhs(case: ScoreCase) -> np.ndarray:
        return infonce(case.pos, case.neg, case.tau)

    def rhs(case: ScoreCase) -> np.ndarray:
        return bpr(case.pos, case.neg, case.tau)

    return Claim(
        "infonce_le_bpr",
        "InfoNCE = log(1 + sum x_j) never exceeds BPR = log prod (1 + x_j); equal for N = 1.",
        r"\mathcal{L}_{\mathrm{InfoNCE}} \le \mathcal{L}_{\mathrm{BPR}}",
        "<=",
        steps,
        lhs,
        rhs,
        score_cases,
        "score gap $s^+ - \\bar s^-$ ($\\tau = 1$, $N = 16$)",
        GAPS,
        _score_sides(lhs, rhs),
        r"$\mathcal{L}_{\mathrm{InfoNCE}}$",
        r"$\mathcal{L}_{\mathrm{BPR}}$",
        _DERIVED,
    )


def _claim_bpr_le_n_infonce() -> Claim:
    own, rest = sp.Symbol("x_j", positive=True), sp.Symbol("R_j", nonnegative=True)
    total = sp.Symbol("S", positive=True)
    steps = (
        Step(
            "each term: $x_j \\le x_j + R_j = \\sum_k x_k$ ($R_j$ = the other negatives' terms) and log is increasing",
            sp.log(1 + own),
            "<=",
            sp.log(1 + own + rest),
            witness=sp.log(1 + rest / (1 + own)),
        ),
        Step(
            "N equal terms $\\log(1 + S)$, $S = \\sum_k x_k$, sum to N InfoNCE",
            _neg_sum(sp.log(1 + total)),
            "=",
            N_SYM * sp.log(1 + total),
        ),
    )

    def lhs(case: ScoreCase) -> np.ndarray:
        return bpr(case.pos, case.neg, case.tau)

    def rhs(case: ScoreCase) -> np.ndarray:
        return case.neg.shape[1] * infonce(case.pos, case.neg, case.tau)

    return Claim(
        "bpr_le_n_infonce",
        "BPR is at most N times InfoNCE: each of its N terms is at most InfoNCE.",
        r"\mathcal{L}_{\mathrm{BPR}} \le N \, \mathcal{L}_{\mathrm{InfoNCE}}",
        "<=",
        steps,
        lhs,
        rhs,
        score_cases,
        "score gap $s^+ - \\bar s^-$ ($\\tau = 1$, $N = 16$)",
        GAPS,
        _score_sides(lhs, rhs),
        r"$\mathcal{L}_{\mathrm{BPR}}$",
        r"$N\,\mathcal{L}_{\mathrm{InfoNCE}}$",
        _DERIVED,
    )


def _claim_infonce_plus_eps0() -> Claim:
    lhs_expr = _symbolic_infonce_plus(0, LAM_SYM)
    rhs_expr = _symbolic_mine(LAM_SYM) + LAM_SYM * sp.log(N_SYM)
    s1, s2, s3 = sp.symbols("b_1:4", real=True)
    small_lhs = -A_SYM + LAM_SYM * sp.log(sp.exp(s1) + sp.exp(s2) + sp.exp(s3))
    small_rhs = -A_SYM + LAM_SYM * sp.log((sp.exp(s1) + sp.exp(s2) + sp.exp(s3)) / 3) + LAM_SYM * sp.log(3)
    steps = (
        Step(
            "$\\epsilon = 1, \\lambda = 1$ gives InfoNCE",
            _symbolic_infonce_plus(1, 1),
            "=",
            _symbolic_infonce(),
        ),
        Step(
            "$\\epsilon = 0, \\lambda = 1$ gives DCL, which is MINE + log N",
            _symbolic_infonce_plus(0, 1),
            "=",
            _symbolic_mine() + sp.log(N_SYM),
        ),
        Step("any $\\lambda$: the log of the mean splits off $\\lambda \\log N$", lhs_expr, "=", rhs_expr),
        Step(
            "the constant has no gradient: d/da of both sides agree",
            sp.diff(lhs_expr, A_SYM),
            "=",
            sp.diff(rhs_expr, A_SYM),
        ),
        Step(
            "and d/db_1 agree (shown for N = 3)",
            sp.diff(small_lhs, s1),
            "=",
            sp.diff(small_rhs, s1),
        ),
    )
    lam_value = 1.1

    def lhs(case: ScoreCase) -> np.ndarray:
        return infonce_plus(case.pos, case.neg, case.tau, eps=0.0, lam=lam_value)

    def rhs(case: ScoreCase) -> np.ndarray:
        return mine(case.pos, case.neg, case.tau, lam=lam_value) + lam_value * math.log(case.neg.shape[1])

    return Claim(
        "infonce_plus_eps0",
        "InfoNCE+ with eps = 0 is MINE+ plus the constant lam log N, so both train identically.",
        r"\mathcal{L}_{\mathrm{InfoNCE+}}(\epsilon = 0, \lambda) = "
        r"\mathcal{L}_{\mathrm{MINE+}}(\lambda) + \lambda \log N",
        "=",
        steps,
        lhs,
        rhs,
        score_cases,
        "score gap $s^+ - \\bar s^-$ ($\\tau = 1$, $N = 16$, $\\lambda = 1.1$)",
        GAPS,
        _score_sides(lhs, rhs),
        r"$\mathcal{L}_{\mathrm{InfoNCE+}}(\epsilon=0, \lambda)$",
        r"$\mathcal{L}_{\mathrm{MINE+}}(\lambda) + \lambda\log N$",
        _DERIVED,
    )


def _claim_donsker_varadhan() -> Claim:
    p = sp.symbols("p_1:4", positive=True)
    q = sp.symbols("q_1:4", positive=True)
    t = sp.symbols("T_1:4", real=True)
    u = sp.Symbol("u", positive=True)
    partition = sum(qi * sp.exp(ti) for qi, ti in zip(q, t, strict=True))
    gibbs = [qi * sp.exp(ti) / partition for qi, ti in zip(q, t, strict=True)]
    kl = sum(pi * sp.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    dv = sum(pi * ti for pi, ti in zip(p, t, strict=True)) - sp.log(partition)
    kl_gibbs = sum(pi * sp.log(pi / gi) for pi, gi in zip(p, gibbs, strict=True))
    normalised = [p[0], p[1], 1 - p[0] - p[1]]
    optimal = [sp.log(pi / qi) for pi, qi in zip(normalised, q, strict=True)]
    dv_optimal = sum(pi * ti for pi, ti in zip(normalised, optimal, strict=True)) - sp.log(
        sum(qi * sp.exp(ti) for qi, ti in zip(q, optimal, strict=True))
    )
    kl_normalised = sum(pi * sp.log(pi / qi) for pi, qi in zip(normalised, q, strict=True))
    steps = (
        Step(
            "KL minus the DV objective is KL(P || G) with the Gibbs distribution $G_i = q_i e^{T_i} / Z$, "
            "up to $(1 - \\sum_i p_i) \\log Z = 0$ (k = 3 outcomes)",
            kl - dv - kl_gibbs,
            "=",
            (1 - sum(p)) * sp.log(partition),
        ),
        convex_minimum_step(
            "$\\log u \\le u - 1$: the convex $u - 1 - \\log u$ is smallest at u = 1", u - 1 - sp.log(u), u, 1
        ),
        Step(
            "so $\\mathrm{KL}(P\\|G) \\ge \\sum_i p_i (1 - g_i / p_i) = 1 - \\sum_i g_i = 0$",
            sum(pi * (1 - gi / pi) for pi, gi in zip(p, gibbs, strict=True)),
            "=",
            sum(p) - 1,
        ),
        Step(
            "equality at the optimal critic $T^* = \\log(P/Q)$ (with $\\sum_i p_i = 1$)",
            dv_optimal,
            "=",
            kl_normalised,
        ),
    )

    def lhs(case: DistributionCase) -> np.ndarray:
        return np.array([kl_divergence(case.p, case.q)])

    def rhs(case: DistributionCase) -> np.ndarray:
        return np.array([donsker_varadhan(case.p, case.q, case.critic)])

    plot_p, plot_q = np.array([0.8, 0.2]), np.array([0.5, 0.5])

    def sides(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kl_value = kl_divergence(plot_p, plot_q)
        dv_values = [donsker_varadhan(plot_p, plot_q, np.array([gap / 2, -gap / 2])) for gap in gaps]
        return np.full(len(gaps), kl_value), np.array(dv_values)

    return Claim(
        "donsker_varadhan",
        "The Donsker-Varadhan bound behind MINE: every critic T gives a lower bound on KL(P || Q); "
        "with P the positive pairs, Q the product of marginals and T = s / tau, the MINE loss is minus it.",
        r"\mathrm{KL}(P \| Q) \ge \mathbb{E}_P[T] - \log \mathbb{E}_Q[e^{T}]",
        ">=",
        steps,
        lhs,
        rhs,
        distribution_cases,
        "critic gap $T_1 - T_2$ ($P = (0.8, 0.2)$, $Q = (0.5, 0.5)$)",
        np.linspace(-4.0, 8.0, 121),
        sides,
        r"$\mathrm{KL}(P\|Q)$",
        r"$\mathrm{E}_P[T] - \log\mathrm{E}_Q[e^T]$",
        "Donsker & Varadhan (1983), used by MINE (Belghazi et al. 2018); derived here.",
    )


def _claim_infonce_mi_bound() -> Claim:
    count = N_SYM + 1
    index = sp.Symbol("c", integer=True, nonnegative=True)
    critic = sp.IndexedBase("f", real=True)
    mean = sp.Sum(sp.exp(critic[index]), (index, 0, N_SYM)) / count
    u = sp.Symbol("u", positive=True)
    steps = (
        Step(
            "log(N + 1) - InfoNCE is the log-ratio of the positive's $e^{f_0}$ to the mean over all N + 1 candidates",
            sp.log(count) - (-critic[0] + sp.log(sp.Sum(sp.exp(critic[index]), (index, 0, N_SYM)))),
            "=",
            sp.log(sp.exp(critic[0]) / mean),
        ),
        Step(
            "symmetry: under the product of marginals the N + 1 candidates are exchangeable, so "
            "$\\mathbb{E}_Q[e^{f_0}/m]$ is the average of $e^{f_c}/m$ over c, which is 1",
            sp.Sum(sp.exp(critic[index]) / mean, (index, 0, N_SYM)) / count,
            "=",
            sp.Integer(1),
        ),
        Step(
            "log is concave (Jensen moves the log of the negatives' average outside: $-\\log 1 = 0$); "
            "the Donsker-Varadhan claim then bounds the mutual information",
            sp.diff(sp.log(u), u, 2),
            "<=",
            sp.Integer(0),
            witness=1 / u**2,
        ),
    )

    def lhs(case: JointCase) -> np.ndarray:
        return np.array([mutual_information(case.joint)])

    def rhs(case: JointCase) -> np.ndarray:
        return np.array([infonce_mi_estimate(case.joint, case.critic, case.num_negatives)])

    plot_joint = np.array(
        [
            [0.22, 0.01, 0.01, 0.01],
            [0.01, 0.22, 0.01, 0.01],
            [0.01, 0.01, 0.22, 0.01],
            [0.01, 0.01, 0.01, 0.22],
        ]
    )
    plot_joint = plot_joint / plot_joint.sum()
    plot_critic = np.log(plot_joint / np.outer(plot_joint.sum(1), plot_joint.sum(0)))

    def sides(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        estimates = [infonce_mi_estimate(plot_joint, plot_critic, int(n)) for n in counts]
        return np.full(len(counts), mutual_information(plot_joint)), np.array(estimates)

    return Claim(
        "infonce_mi_bound",
        "log(N + 1) minus the expected InfoNCE loss is a lower bound on the mutual information of users and "
        "items, for every critic (score function).",
        r"I(U; I) \ge \log(N + 1) - \mathbb{E}\left[\mathcal{L}_{\mathrm{InfoNCE}}\right]",
        ">=",
        steps,
        lhs,
        rhs,
        joint_cases,
        "number of negatives N (4 x 4 joint, optimal critic)",
        np.arange(1, 7),
        sides,
        r"$I(U; I)$",
        r"$\log(N+1) - \mathrm{E}[\mathcal{L}_{\mathrm{InfoNCE}}]$",
        "van den Oord et al. 2018 (CPC), Poole et al. 2019; derived here from the Donsker-Varadhan claim. "
        "Expectations are computed exactly by enumerating every tuple of negatives.",
    )


def _claim_infonce_saturation() -> Claim:
    steps = (
        Step(
            "InfoNCE = log(1 + sum_j x_j) with $x_j > 0$ is non-negative",
            sp.log(N_SYM + 1) - sp.log(1 + _neg_sum(X_SYM[J_SYM])),
            "<=",
            sp.log(N_SYM + 1),
            witness=sp.log(1 + _neg_sum(X_SYM[J_SYM])),
        ),
    )

    def lhs(case: ScoreCase) -> np.ndarray:
        return math.log(case.neg.shape[1] + 1) - infonce(case.pos, case.neg, case.tau)

    def rhs(case: ScoreCase) -> np.ndarray:
        return np.full(case.pos.shape, math.log(case.neg.shape[1] + 1))

    def sides(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cases = [_n_scenario(int(n), gap=4.0) for n in counts]
        return np.concatenate([lhs(case) for case in cases]), np.concatenate([rhs(case) for case in cases])

    return Claim(
        "infonce_saturation",
        "The InfoNCE estimate of the mutual information can never exceed log(N + 1), however large the true "
        "mutual information is.",
        r"\log(N + 1) - \mathcal{L}_{\mathrm{InfoNCE}} \le \log(N + 1)",
        "<=",
        steps,
        lhs,
        rhs,
        score_cases,
        "number of negatives N (score gap 4, $\\tau = 1$)",
        NUM_NEGATIVES_AXIS,
        sides,
        r"$\log(N+1) - \mathcal{L}_{\mathrm{InfoNCE}}$",
        r"$\log(N+1)$",
        "Poole et al. 2019 (the log(N + 1) ceiling); derived here.",
    )


def _claim_log_mean_exp_bias() -> Claim:
    u, m = sp.Symbol("u", positive=True), sp.Symbol("m", positive=True)
    steps = (
        Step(
            "log is concave",
            sp.diff(sp.log(u), u, 2),
            "<=",
            sp.Integer(0),
            witness=1 / u**2,
        ),
        Step(
            "the sample mean of $e^{B_j}$ is unbiased: each of the N draws has mean $m = \\mathbb{E}[e^B]$",
            _neg_sum(m) / N_SYM,
            "=",
            m,
        ),
    )

    def lhs(case: SampleCase) -> np.ndarray:
        return np.array([expected_log_mean_exp(case.values, case.probs, case.num_samples)])

    def rhs(case: SampleCase) -> np.ndarray:
        return np.array([log_mean_exp(case.values, case.probs)])

    plot_values, plot_probs = np.array([0.0, 1.0, 3.0]), np.array([0.7, 0.2, 0.1])

    def sides(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        estimates = [expected_log_mean_exp(plot_values, plot_probs, int(n)) for n in counts]
        return np.array(estimates), np.full(len(counts), log_mean_exp(plot_values, plot_probs))

    return Claim(
        "log_mean_exp_bias",
        "The sampled log-mean-exp of the negatives (MINE's second term) is biased low: by Jensen's "
        "inequality its expectation is below the log of the true mean, so the sampled MINE loss is "
        "optimistic; the bias shrinks as N grows.",
        r"\mathbb{E}\left[\log \frac{1}{N} \sum_{j=1}^{N} e^{B_j}\right]"
        r" \le \log \mathbb{E}\left[e^{B}\right]",
        "<=",
        steps,
        lhs,
        rhs,
        sample_cases,
        "number of samples N (B in {0, 1, 3} with probabilities 0.7, 0.2, 0.1)",
        np.arange(1, 41),
        sides,
        r"$\mathrm{E}[\log \frac{1}{N}\sum_j e^{B_j}]$",
        r"$\log\mathrm{E}[e^B]$",
        "Jensen's inequality (Belghazi et al. 2018 discuss this bias of MINE); derived here. Expectations "
        "are computed exactly over all multinomial counts.",
    )


def claims() -> dict[str, Claim]:
    """Every claim of chapter 03_bounds, by name, in the chapter's order."""
    built = [
        _claim_softplus(),
        _claim_infonce_ge_mine(),
        _claim_infonce_le_bpr(),
        _claim_bpr_le_n_infonce(),
        _claim_infonce_plus_eps0(),
        _claim_donsker_varadhan(),
        _claim_infonce_mi_bound(),
        _claim_infonce_saturation(),
        _claim_log_mean_exp_bias(),
    ]
    return {claim.name: claim for claim in built}
