"""Symbolic derivations (sympy) and their float64 numeric checks: bounds, gradients and normal equations.

Every statement of chapter 03_bounds is a :class:`Claim`: its LaTeX statement, the symbolic steps of its
derivation (each a :class:`Step` whose sympy verdict is ``True``, ``False`` or ``None`` = undecided), a
numeric check over random and adversarial inputs in numpy float64 (log-sum-exp stable) that reports the
smallest margin found, and its two sides as functions of N or of the score gap for plotting. Chapter
04_hardness uses :func:`gradient_table` and :func:`gradient_steps`; chapter 06_linear_models uses
:func:`ials_steps`, :func:`ease_steps` and :func:`debiased_mse_steps`.

The papers of Li & Jin (arXiv 2312.08517 / 2312.08520) could only be read as summaries: every statement here
is derived from the loss formulas of the papers chapter 02_losses cites, not copied from their text; each claim's
``source`` says which.

No torch here: the numeric references (:func:`infonce`, :func:`mine`, :func:`infonce_plus`, :func:`bpr`) are
numpy float64 versions of the spec's formulas, used to check the claims; tests compare them with
``recloss_lite.core.losses``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from scipy.special import gammaln, logsumexp, rel_entr

Verdict = bool | None
RELATIONS = ("=", "<=", ">=")
_LATEX_RELATION = {"=": "=", "<=": r"\le", ">=": r"\ge"}
NUMERIC_TOLERANCE = 1e-9


# --------------------------------------------------------------------------------------------------
# Verdicts and steps
# --------------------------------------------------------------------------------------------------


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """Three-valued AND: False if any step is False, None (undecided) if any is None, else True.

    Chapter 03_bounds.
    """
    values = list(verdicts)
    if any(value is False for value in values):
        return False
    if any(value is None for value in values):
        return None
    return True


def verdict_text(verdict: Verdict) -> str:
    """'true', 'false' or 'undecided' (sympy's ``None``: it could not decide, never that the claim holds).

    Chapter 03_bounds.
    """
    return {True: "true", False: "false", None: "undecided"}[verdict]


def is_zero(expr: sp.Expr) -> Verdict:
    """sympy's verdict on ``expr == 0``: ``doit``, simplify, then ``Expr.equals`` (which may answer None).

    ``doit`` comes first because ``equals`` can wrongly answer False on unevaluated objects such as ``Subs``.

    Chapter 03_bounds.
    """
    expr = expr.doit()
    if sp.simplify(expr) == 0:
        return True
    return expr.equals(0)


@dataclass(frozen=True)
class Step:
    """One step of a derivation: ``lhs relation rhs`` with the reason in words.

    For an inequality, ``witness`` is an expression that equals the gap (rhs - lhs for ``<=``, lhs - rhs for
    ``>=``) and whose sign sympy can decide from the symbols' assumptions; the step's verdict is then
    "gap == witness" AND "witness >= 0". ``check`` replaces that rule for steps sympy needs help with (e.g. a
    convex function's minimum); it must itself return sympy's three-valued answers.

    Chapter 03_bounds.
    """

    text: str
    lhs: sp.Expr
    relation: str
    rhs: sp.Expr
    witness: sp.Expr | None = None
    check: Callable[[], Verdict] | None = None

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"Step relation={self.relation!r}: allowed values are {RELATIONS}")

    def latex(self) -> str:
        """The step as LaTeX, ``lhs \\le rhs`` and so on."""
        return f"{sp.latex(self.lhs)} {_LATEX_RELATION[self.relation]} {sp.latex(self.rhs)}"

    def verdict(self) -> Verdict:
        """sympy's verdict on this step: True, False or None (undecided)."""
        if self.check is not None:
            return self.check()
        if self.relation == "=":
            return is_zero(self.lhs - self.rhs)
        gap = self.rhs - self.lhs if self.relation == "<=" else self.lhs - self.rhs
        if self.witness is None:
            return sp.simplify(gap).is_nonnegative
        return combine([is_zero(gap - self.witness), self.witness.is_nonnegative])


def convex_minimum_step(text: str, function: sp.Expr, variable: sp.Symbol, at: sp.Expr) -> Step:
    """Step ``function >= function(at)`` proved by f'(at) = 0 and f'' > 0 on the variable's domain.

    Chapter 03_bounds.
    """

    def check() -> Verdict:
        first = sp.diff(function, variable).subs(variable, at)
        second = sp.simplify(sp.diff(function, variable, 2))
        return combine([is_zero(first), second.is_positive])

    return Step(text, function, ">=", sp.simplify(function.subs(variable, at)), check=check)


def increasing_step(text: str, function: sp.Expr, variable: sp.Symbol, start: sp.Expr) -> Step:
    """Step ``function >= function(start)`` for variable >= start, proved by f' > 0 on its domain.

    Chapter 05_debiasing.
    """

    def check() -> Verdict:
        return sp.simplify(sp.diff(function, variable)).is_positive

    return Step(text, function, ">=", sp.simplify(function.subs(variable, start)), check=check)


# --------------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A statement ``lhs relation rhs`` with its derivation, numeric check and plot.

    Attributes:
        name: identifier (``CLAIMS[name]``).
        title: one line in words.
        statement: the claim in LaTeX.
        relation: ``"="``, ``"<="`` or ``">="`` between :attr:`lhs` and :attr:`rhs` in the numeric check.
        steps: the symbolic derivation.
        lhs, rhs: the two sides evaluated on one input case (float64 arrays of equal shape).
        cases: ``cases(rng, n_trials, adversarial)`` -> list of input cases (random ones, then adversarial).
        axis, axis_values, sides: the plot: ``sides(axis_values)`` -> (lhs values, rhs values).
        lhs_label, rhs_label: labels of the two sides in matplotlib mathtext (no ``\\mathbb``: mathtext looks its
            font up as a file named "bb" in the working directory).
        source: where the statement comes from.

    Chapter 03_bounds.
    """

    name: str
    title: str
    statement: str
    relation: str
    steps: tuple[Step, ...]
    lhs: Callable[[Any], np.ndarray]
    rhs: Callable[[Any], np.ndarray]
    cases: Callable[[np.random.Generator, int, bool], list[Any]]
    axis: str
    axis_values: np.ndarray
    sides: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    lhs_label: str
    rhs_label: str
    source: str

    def sympy_verdict(self) -> Verdict:
        """Three-valued AND of the steps' sympy verdicts (None = undecided, never counted as true)."""
        return combine(step.verdict() for step in self.steps)

    def margins(self, rng: np.random.Generator, n_trials: int = 200, adversarial: bool = True) -> np.ndarray:
        """Relative margins of every checked value: >= 0 where the claim holds.

        The margin is (rhs - lhs) for ``<=``, (lhs - rhs) for ``>=`` and -|lhs - rhs| for ``=``, divided by
        max(1, |lhs|, |rhs|) so that rounding at scores of 1e4 / tau = 1e6 is comparable with rounding near 0.
        """
        found = []
        for case in self.cases(rng, n_trials, adversarial):
            lhs = np.asarray(self.lhs(case), dtype=np.float64)
            rhs = np.asarray(self.rhs(case), dtype=np.float64)
            if self.relation == "<=":
                gap = rhs - lhs
            elif self.relation == ">=":
                gap = lhs - rhs
            else:
                gap = -np.abs(lhs - rhs)
            scale = np.maximum(1.0, np.maximum(np.abs(lhs), np.abs(rhs)))
            found.append(np.ravel(gap / scale))
        return np.concatenate(found)

    def numeric_check(
        self, rng: np.random.Generator, n_trials: int = 200, adversarial: bool = True
    ) -> tuple[bool, float]:
        """(holds, smallest margin) over ``n_trials`` random cases plus the adversarial ones.

        Holds means every margin is >= -NUMERIC_TOLERANCE (1e-9, float64 rounding); a NaN fails.
        """
        margins = self.margins(rng, n_trials, adversarial)
        smallest = float(np.min(margins)) if not np.isnan(margins).any() else math.nan
        return bool(smallest >= -NUMERIC_TOLERANCE), smallest


@dataclass(frozen=True)
class ClaimReport:
    """What :func:`show` found for one claim.

    Chapter 03_bounds.
    """

    name: str
    verdict: Verdict
    numeric_ok: bool
    smallest_margin: float
    step_verdicts: tuple[Verdict, ...]


def check(claim: Claim, rng: np.random.Generator, n_trials: int = 200) -> ClaimReport:
    """Run the sympy verdicts and the numeric check of ``claim``.

    Chapter 03_bounds.
    """
    step_verdicts = tuple(step.verdict() for step in claim.steps)
    ok, smallest = claim.numeric_check(rng, n_trials)
    return ClaimReport(claim.name, combine(step_verdicts), ok, smallest, step_verdicts)


def show(claim: Claim, rng: np.random.Generator, n_trials: int = 200) -> ClaimReport:
    """Display a claim in a notebook: statement, each step with sympy's verdict, the numeric check.

    Uses ``IPython.display.Math(sympy.latex(...))``; returns the :class:`ClaimReport`. Chapter 03_bounds.
    """
    from IPython.display import Markdown, Math, display

    report = check(claim, rng, n_trials)
    display(Markdown(f"**Claim ({claim.name}).** {claim.title} *Source:* {claim.source}"))
    display(Math(claim.statement))
    for number, (step, verdict) in enumerate(zip(claim.steps, report.step_verdicts, strict=True), start=1):
        display(Markdown(f"Step {number}: {step.text} (sympy: **{verdict_text(verdict)}**)"))
        display(Math(step.latex()))
    print(f"sympy verdict on the steps: {verdict_text(report.verdict)}")
    print(
        f"numeric check ({n_trials} random cases + adversarial ones, float64): "
        f"{'holds' if report.numeric_ok else 'FAILS'}; smallest relative margin {report.smallest_margin:.3g}"
    )
    return report


# --------------------------------------------------------------------------------------------------
# numpy float64 references of the spec's losses (one row per entry of pos)
# --------------------------------------------------------------------------------------------------


def _check_scores(pos: np.ndarray, neg: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0] or neg.shape[1] == 0:
        raise ValueError(
            f"theory: pos must be (B,) and neg (B, N) with N >= 1, got {pos.shape} and {neg.shape}"
        )
    if not tau > 0:
        raise ValueError(f"theory: tau={tau} must be > 0")
    return pos / tau, neg / tau


def infonce(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """InfoNCE per row, (B,), (B, N) -> (B,): -a + log(e^a + sum_j e^{b_j}) (spec ``infonce``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    return logsumexp(np.concatenate([a[:, None], b], axis=1), axis=1) - a


def infonce_plus(
    pos: np.ndarray, neg: np.ndarray, tau: float = 1.0, eps: float = 1.0, lam: float = 1.0
) -> np.ndarray:
    """InfoNCE+ per row: -a + lam * log(eps * e^a + sum_j e^{b_j}) (Li & Jin; spec ``infonce+``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    if eps == 0:
        return lam * logsumexp(b, axis=1) - a
    return lam * logsumexp(np.concatenate([(a + math.log(eps))[:, None], b], axis=1), axis=1) - a


def mine(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0, lam: float = 1.0) -> np.ndarray:
    """MINE (lam = 1) / MINE+ per row: -a + lam * log(mean_j e^{b_j}) (spec ``mine``, ``mine+``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    return lam * (logsumexp(b, axis=1) - math.log(b.shape[1])) - a


def bpr(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """BPR per row: sum_j softplus(b_j - a) (spec ``bpr``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    return np.logaddexp(0.0, b - a[:, None]).sum(axis=1)


# --------------------------------------------------------------------------------------------------
# Input cases
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreCase:
    """A batch of rows with N negatives each: pos (B,), neg (B, N), temperature tau.

    Chapter 03_bounds.
    """

    pos: np.ndarray
    neg: np.ndarray
    tau: float


def score_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[ScoreCase]:
    """Random score batches (N log-uniform in 1..512, tau 0.01..10, scale 1e-3..1e2), then adversarial ones.

    Adversarial: ties at 0 and at +-1e4; the positive 2e4 above or below every negative at tau = 0.01; one
    negative dominating; N = 1; N = 4096 ties.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        num_negatives = int(np.exp(rng.uniform(0.0, math.log(512.0))))
        tau = float(np.exp(rng.uniform(math.log(0.01), math.log(10.0))))
        scale = float(np.exp(rng.uniform(math.log(1e-3), math.log(1e2))))
        offset = rng.normal(0.0, scale)
        pos = rng.normal(offset, scale, size=16)
        neg = rng.normal(0.0, scale, size=(16, num_negatives))
        cases.append(ScoreCase(pos, neg, tau))
    if adversarial:
        for tau in (0.01, 1.0):
            for level in (0.0, 1e4, -1e4):
                cases.append(ScoreCase(np.full(1, level), np.full((1, 8), level), tau))
            cases.append(ScoreCase(np.array([1e4]), np.full((1, 8), -1e4), tau))
            cases.append(ScoreCase(np.array([-1e4]), np.full((1, 8), 1e4), tau))
            cases.append(ScoreCase(np.array([0.0]), np.array([[1e4] + [-1e4] * 7]), tau))
        cases.append(ScoreCase(rng.normal(size=8), rng.normal(size=(8, 1)), 0.05))
        cases.append(ScoreCase(np.zeros(2), np.zeros((2, 4096)), 1.0))
    return cases


@dataclass(frozen=True)
class DistributionCase:
    """Two distributions P, Q over k outcomes and a critic T (k,).

    Chapter 03_bounds.
    """

    p: np.ndarray
    q: np.ndarray
    critic: np.ndarray


def distribution_cases(
    rng: np.random.Generator, n_trials: int, adversarial: bool = True
) -> list[DistributionCase]:
    """Random (P, Q, T) with k in 2..20, Dirichlet concentrations 0.05..10; adversarial: the optimal critic
    log(P/Q) + c (equality), P = Q with a constant critic, critics of +-1e4, nearly degenerate P.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        k = int(rng.integers(2, 21))
        concentration = float(np.exp(rng.uniform(math.log(0.05), math.log(10.0))))
        p, q = rng.dirichlet(np.full(k, concentration), size=2)
        p, q = np.maximum(p, 1e-300), np.maximum(q, 1e-300)
        critic = rng.normal(0.0, float(np.exp(rng.uniform(math.log(0.1), math.log(20.0)))), size=k)
        cases.append(DistributionCase(p / p.sum(), q / q.sum(), critic))
    if adversarial:
        p, q = rng.dirichlet(np.ones(5), size=2)
        cases.append(DistributionCase(p, q, np.log(p / q) + 3.0))
        cases.append(DistributionCase(p, p, np.full(5, 7.0)))
        cases.append(DistributionCase(p, q, np.array([1e4, -1e4, 1e4, -1e4, 0.0])))
        skewed = np.array([1.0 - 4e-12, 1e-12, 1e-12, 1e-12, 1e-12])
        cases.append(DistributionCase(skewed, q, np.log(skewed / q)))
        cases.append(DistributionCase(skewed, q, rng.normal(0.0, 100.0, size=5)))
    return cases


@dataclass(frozen=True)
class SampleCase:
    """A discrete score distribution: values (k,) with probabilities (k,), and a sample size N.

    Chapter 03_bounds.
    """

    values: np.ndarray
    probs: np.ndarray
    num_samples: int


def sample_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[SampleCase]:
    """Random k-point score distributions (k in 1..4, N in 1..12, scale 1e-2..30); adversarial: a point mass,
    values of +-1e4, probabilities of 1e-12.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        k = int(rng.integers(1, 5))
        scale = float(np.exp(rng.uniform(math.log(1e-2), math.log(30.0))))
        cases.append(
            SampleCase(rng.normal(0.0, scale, size=k), rng.dirichlet(np.ones(k)), int(rng.integers(1, 13)))
        )
    if adversarial:
        cases.append(SampleCase(np.array([3.0]), np.array([1.0]), 7))
        cases.append(SampleCase(np.array([-1e4, 1e4]), np.array([0.5, 0.5]), 5))
        cases.append(SampleCase(np.array([0.0, 1e4]), np.array([1.0 - 1e-12, 1e-12]), 9))
        cases.append(SampleCase(np.array([0.0, 50.0, -50.0]), np.array([0.98, 0.01, 0.01]), 12))
    return cases


@dataclass(frozen=True)
class JointCase:
    """A joint distribution of (user, item) (k_u, k_i), a critic f (k_u, k_i), the number of negatives N.

    Chapter 03_bounds.
    """

    joint: np.ndarray
    critic: np.ndarray
    num_negatives: int


def joint_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[JointCase]:
    """Random joints (k_u, k_i in 2..4, N in 1..3) with random critics; adversarial: independent users and
    items (MI = 0), the optimal critic log p(i|u)/p(i), a deterministic joint with a critic of 1e4 on its
    support.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        shape = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        concentration = float(np.exp(rng.uniform(math.log(0.1), math.log(10.0))))
        joint = rng.dirichlet(np.full(shape[0] * shape[1], concentration)).reshape(shape)
        joint = np.maximum(joint, 1e-300)
        critic = rng.normal(0.0, float(np.exp(rng.uniform(math.log(0.1), math.log(10.0)))), size=shape)
        cases.append(JointCase(joint / joint.sum(), critic, int(rng.integers(1, 4))))
    if adversarial:
        independent = np.outer(rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(4)))
        cases.append(JointCase(independent, rng.normal(0.0, 5.0, size=(3, 4)), 3))
        joint = rng.dirichlet(np.ones(12)).reshape(3, 4)
        optimal = np.log(joint / np.outer(joint.sum(1), joint.sum(0)))
        for num_negatives in (1, 2, 4):
            cases.append(JointCase(joint, optimal, num_negatives))
        diagonal = np.full((3, 3), 1e-300) + np.eye(3) / 3.0
        cases.append(JointCase(diagonal / diagonal.sum(), 1e4 * np.eye(3), 2))
    return cases


# --------------------------------------------------------------------------------------------------
# Numeric sides that are not plain losses
# --------------------------------------------------------------------------------------------------


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) = sum_i p_i log(p_i / q_i) in float64 (0 log 0 = 0).

    Chapter 03_bounds.
    """
    return float(rel_entr(p, q).sum())


def donsker_varadhan(p: np.ndarray, q: np.ndarray, critic: np.ndarray) -> float:
    """The Donsker-Varadhan bound E_P[T] - log E_Q[e^T] (MINE's objective, Belghazi et al. 2018), float64.

    Chapter 03_bounds.
    """
    return float(np.dot(p, critic) - logsumexp(critic, b=q))


def _compositions(num_samples: int, k: int) -> np.ndarray:
    """All count vectors (C, k) of ``num_samples`` draws from k outcomes."""
    draws = np.array(list(itertools.combinations_with_replacement(range(k), num_samples)), dtype=np.int64)
    return np.stack([np.bincount(row, minlength=k) for row in draws])


def expected_log_mean_exp(values: np.ndarray, probs: np.ndarray, num_samples: int) -> float:
    """E[log (1/N) sum_j e^{B_j}] for N iid draws of a discrete B, exactly (a sum over multinomial counts).

    Chapter 03_bounds.
    """
    counts = _compositions(num_samples, len(values))
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
        log_counts = np.log(counts)
    log_weight = gammaln(num_samples + 1) - gammaln(counts + 1).sum(axis=1)
    log_weight = log_weight + np.where(counts > 0, counts * log_probs, 0.0).sum(axis=1)
    log_mean = logsumexp(log_counts + values, axis=1) - math.log(num_samples)
    return float(np.dot(np.exp(log_weight), log_mean))


def log_mean_exp(values: np.ndarray, probs: np.ndarray) -> float:
    """log E[e^B] for a discrete B, float64.

    Chapter 03_bounds.
    """
    return float(logsumexp(values, b=probs))


def mutual_information(joint: np.ndarray) -> float:
    """I(U; I) of a joint distribution table (k_u, k_i), in nats.

    Chapter 03_bounds.
    """
    return kl_divergence(joint.ravel(), np.outer(joint.sum(axis=1), joint.sum(axis=0)).ravel())


def infonce_mi_estimate(joint: np.ndarray, critic: np.ndarray, num_negatives: int) -> float:
    """log(N + 1) - E[InfoNCE] exactly, for positives (u, i) ~ joint and N negatives iid from p(i).

    Enumerates every tuple of negatives (k_i^N of them), so keep k_i^N small.

    Chapter 03_bounds.
    """
    item_marginal = joint.sum(axis=0)
    tuples = np.array(list(itertools.product(range(joint.shape[1]), repeat=num_negatives)), dtype=np.int64)
    with np.errstate(divide="ignore"):
        tuple_log_prob = np.log(item_marginal)[tuples].sum(axis=1)  # (T,)
    neg = critic[:, tuples]  # (k_u, T, N)
    pos = critic[:, :, None, None]  # (k_u, k_i, 1, 1)
    shape = (critic.shape[0], critic.shape[1], len(tuples), num_negatives)
    scores = np.concatenate(
        [np.broadcast_to(pos, shape[:3] + (1,)), np.broadcast_to(neg[:, None], shape)], axis=3
    )
    row_loss = logsumexp(scores, axis=3) - critic[:, :, None]  # (k_u, k_i, T)
    expected = np.einsum("ui,uit,t->", joint, row_loss, np.exp(tuple_log_prob))
    return float(math.log(num_negatives + 1) - expected)


# --------------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------------

N_SYM = sp.Symbol("N", positive=True, integer=True)
J_SYM = sp.Symbol("j", positive=True, integer=True)
A_SYM = sp.Symbol("a", real=True)  # a = s+ / tau
B_SYM = sp.IndexedBase("b", real=True)  # b_j = s_j / tau
X_SYM = sp.IndexedBase("x", positive=True)  # x_j = e^{b_j - a}
LAM_SYM = sp.Symbol("lambda", positive=True)
Z_SYM = sp.Symbol("z", real=True)


def _softplus(z: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(z))


def _neg_sum(expr: sp.Expr) -> sp.Expr:
    return sp.Sum(expr, (J_SYM, 1, N_SYM))


def _symbolic_infonce() -> sp.Expr:
    return -A_SYM + sp.log(sp.exp(A_SYM) + _neg_sum(sp.exp(B_SYM[J_SYM])))


def _symbolic_mine(lam: sp.Expr = 1) -> sp.Expr:
    return -A_SYM + lam * sp.log(_neg_sum(sp.exp(B_SYM[J_SYM])) / N_SYM)


def _symbolic_infonce_plus(eps: sp.Expr, lam: sp.Expr) -> sp.Expr:
    return -A_SYM + lam * sp.log(eps * sp.exp(A_SYM) + _neg_sum(sp.exp(B_SYM[J_SYM])))


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
            "each term: $x_j \\le x_j + R_j = \\sum_k x_k$ ($R_j$ = the other negatives' terms) and log "
            "is increasing",
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
            "log(N + 1) - InfoNCE is the log-ratio of the positive's $e^{f_0}$ to the mean over all N + 1 "
            "candidates",
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

    def _evaluate(
        self, expr: sp.Expr, pos: np.ndarray, neg: np.ndarray, params: dict[str, float]
    ) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Chapter 06_linear_models: normal equations of iALS and EASE, and the debiased MSE's re-weighting
# --------------------------------------------------------------------------------------------------


def _matrices_equal(lhs: sp.Matrix, rhs: sp.Matrix) -> Callable[[], Verdict]:
    """A step check: every entry of lhs - rhs is zero (sympy's verdict, entry by entry)."""

    def check() -> Verdict:
        if lhs.shape != rhs.shape:
            return False
        return combine(is_zero(entry) for entry in (lhs - rhs))

    return check


def _explicit_gradient(objective: sp.Expr, variables: sp.Matrix) -> sp.Matrix:
    return variables.applyfunc(lambda variable: sp.diff(objective, variable))


def ials_steps() -> list[Step]:
    """iALS's normal equations (Hu et al. 2008, eq. 4) and the Gramian trick, derived and checked by sympy.

    For one user with fixed item factors H (n_items, k), targets y (1 on observed items) and confidences
    C = diag(c): the gradient of (y - Hw)^T C (y - Hw) + l2 w^T w. The general matrix statement is shown; the
    verdict checks it entry by entry on 3 items and k = 2 with symbolic entries. Chapter 06_linear_models.
    """
    n, k = sp.symbols("n k", positive=True, integer=True)
    items, user = sp.MatrixSymbol("H", n, k), sp.MatrixSymbol("w", k, 1)
    target, weights = sp.MatrixSymbol("y", n, 1), sp.MatrixSymbol("C", n, n)
    l2 = sp.Symbol("lambda", positive=True)
    unobserved = sp.Symbol("w_0", positive=True)
    general_objective = (target - items * user).T * weights * (target - items * user) + l2 * user.T * user
    general_gradient = (
        2 * (items.T * weights * items + l2 * sp.Identity(k)) * user - 2 * items.T * weights * target
    )

    h = sp.Matrix(3, 2, lambda i, j: sp.Symbol(f"h_{i + 1}{j + 1}", real=True))
    w = sp.Matrix(2, 1, lambda i, j: sp.Symbol(f"w_{i + 1}", real=True))
    c1, c2 = sp.symbols("c_1 c_2", positive=True)
    confidence = sp.diag(c1, c2, unobserved)  # items 1 and 2 observed, item 3 not
    y = sp.Matrix([1, 1, 0])
    residual = y - h * w
    objective = (residual.T * confidence * residual)[0, 0] + l2 * (w.T * w)[0, 0]
    gradient = _explicit_gradient(objective, w)
    expected = 2 * (h.T * confidence * h + l2 * sp.eye(2)) * w - 2 * h.T * confidence * y
    gramian = unobserved * h.T * h + sum(
        ((c - unobserved) * h[i, :].T * h[i, :] for i, c in ((0, c1), (1, c2))), sp.zeros(2, 2)
    )
    right_side = c1 * h[0, :].T + c2 * h[1, :].T
    return [
        Step(
            "gradient of one user's objective; zero at the optimum: "
            "$(H^\\top C H + \\lambda I)\\, w = H^\\top C y$",
            sp.Derivative(general_objective, user),
            "=",
            general_gradient,
            check=_matrices_equal(gradient, expected),
        ),
        Step(
            "the Gramian trick: unobserved items all weigh $w_0$, so $H^\\top C H$ is the shared "
            "$w_0 H^\\top H$ plus one rank-one term per observed item",
            sp.MatMul(items.T, weights, items),
            "=",
            unobserved * items.T * items
            + sp.MatrixSymbol(r"\sum_{i \in P_u} (c_{ui} - w_0) h_i h_i^\top", k, k),
            check=_matrices_equal(h.T * confidence * h, gramian),
        ),
        Step(
            "the right-hand side only involves observed items ($y_i = 0$ elsewhere)",
            sp.MatMul(items.T, weights, target),
            "=",
            sp.MatrixSymbol(r"\sum_{i \in P_u} c_{ui} h_i", k, 1),
            check=_matrices_equal(h.T * confidence * y, right_side),
        ),
    ]


def ease_instance(seed: int = 0, n_users: int = 7, n_items: int = 4, l2: int = 3) -> dict[str, sp.Matrix]:
    """A small random 0/1 matrix X and EASE's closed form on it in exact rationals (Steck 2019, eq. 8).

    Returns X, the Gram matrix G = X^T X, P = (G + l2 I)^-1 and B = I - P diag(1 / diag P).

    Chapter 06_linear_models.
    """
    rng = np.random.default_rng(seed)
    matrix = sp.Matrix((rng.random((n_users, n_items)) < 0.5).astype(int))
    gram = matrix.T * matrix
    inverse = (gram + l2 * sp.eye(n_items)).inv()
    weights = sp.eye(n_items) - inverse * sp.diag(*[1 / inverse[j, j] for j in range(n_items)])
    return {"X": matrix, "G": gram, "P": inverse, "B": weights, "l2": sp.Integer(l2)}


def ease_steps() -> list[Step]:
    """EASE: the gradient of |X - XB|_F^2 + l2 |B|_F^2 and the closed form with diag(B) = 0 (Steck 2019).

    The gradient is checked entry by entry on a 3 x 2 symbolic X; the closed form exactly, in rationals, on
    :func:`ease_instance`: diag(B) = 0 and the gradient vanishes off the diagonal (the diagonal is absorbed by
    the Lagrange multipliers of the constraint). Chapter 06_linear_models.
    """
    n, m = sp.symbols("n m", positive=True, integer=True)
    data_matrix, weights = sp.MatrixSymbol("X", n, m), sp.MatrixSymbol("B", m, m)
    l2 = sp.Symbol("lambda", positive=True)
    general_objective = sp.Trace(
        (data_matrix - data_matrix * weights).T * (data_matrix - data_matrix * weights)
    )
    general_gradient = 2 * data_matrix.T * (data_matrix * weights - data_matrix) + 2 * l2 * weights

    x = sp.Matrix(3, 2, lambda i, j: sp.Symbol(f"x_{i + 1}{j + 1}", real=True))
    b = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"b_{i + 1}{j + 1}", real=True))
    residual = x - x * b
    objective = sum(entry**2 for entry in residual) + l2 * sum(entry**2 for entry in b)
    gradient = _explicit_gradient(objective, b)
    expected = 2 * x.T * (x * b - x) + 2 * l2 * b

    instance = ease_instance()
    size = instance["B"].shape[0]
    stationarity = (instance["G"] + instance["l2"] * sp.eye(size)) * instance["B"] - instance["G"]
    off_diagonal = sp.Matrix(size, size, lambda i, j: 0 if i == j else stationarity[i, j])
    return [
        Step(
            "gradient of the EASE objective (plus $\\lambda |B|_F^2$)",
            sp.Derivative(general_objective + l2 * sp.Trace(weights.T * weights), weights),
            "=",
            general_gradient,
            check=_matrices_equal(gradient, expected),
        ),
        Step(
            "closed form $B = I - P\\,\\mathrm{diag}(1/\\mathrm{diag}\\,P)$, "
            "$P = (X^\\top X + \\lambda I)^{-1}$: the constraint $\\mathrm{diag}(B) = 0$ holds (exact, on a "
            "random 7 x 4 instance)",
            sp.Symbol(r"\mathrm{diag}(B)"),
            "=",
            sp.Integer(0),
            check=_matrices_equal(sp.Matrix([instance["B"][j, j] for j in range(size)]), sp.zeros(size, 1)),
        ),
        Step(
            "and the gradient $(X^\\top X + \\lambda I)B - X^\\top X$ vanishes off the diagonal, where the "
            "Lagrange multipliers of the constraint act",
            sp.Symbol(r"\mathrm{offdiag}\left((X^\top X + \lambda I) B - X^\top X\right)"),
            "=",
            sp.Integer(0),
            check=_matrices_equal(off_diagonal, sp.zeros(size, size)),
        ),
    ]


def debiased_mse_steps() -> list[Step]:
    """Why the debiased MSE only re-weights observed entries (Li & Jin's claim, derived here).

    On a 2 x 3 matrix with observed entries P = {(1,1), (1,2), (2,3)} and negatives uniform over all entries
    (density rho = |P| / 6), the sum over P of the spec's debiased mse row loss
    (s - 1)^2 + w (E[s^2] - tau+ s^2) / (1 - tau+) is rewritten as: observed entries with quadratic
    coefficient A = 1 - c + w0' (c = w tau+ / (1 - tau+), w0' = w rho / (1 - tau+)), unobserved ones with w0';
    then as
    (1/A) times the plain iALS objective at the scaled scores A s with unobserved weight w0' / A, plus a
    constant. EASE's equal weighting (w0' / A = 1) needs tau+ = 1 / (1 + w). Chapter 06_linear_models;
    ``linear.debiased_weights`` implements the map.
    """
    neg_weight, tau_plus = sp.Symbol("w", positive=True), sp.Symbol("tau^+", positive=True)
    scores = sp.Matrix(2, 3, lambda i, j: sp.Symbol(f"s_{i + 1}{j + 1}", real=True))
    observed = [(0, 0), (0, 1), (1, 2)]
    unobserved = [(i, j) for i in range(2) for j in range(3) if (i, j) not in observed]
    density = sp.Rational(len(observed), scores.rows * scores.cols)
    mean_square = sum(entry**2 for entry in scores) / (scores.rows * scores.cols)
    debiased = sum(
        (scores[i, j] - 1) ** 2 + neg_weight * (mean_square - tau_plus * scores[i, j] ** 2) / (1 - tau_plus)
        for i, j in observed
    )
    correction = neg_weight * tau_plus / (1 - tau_plus)
    all_weight = neg_weight * density / (1 - tau_plus)
    coefficient = 1 - correction + all_weight
    reweighted = sum(
        coefficient * scores[i, j] ** 2 - 2 * scores[i, j] + 1 for i, j in observed
    ) + all_weight * sum(scores[i, j] ** 2 for i, j in unobserved)
    scaled = coefficient * scores
    plain = sum((scaled[i, j] - 1) ** 2 for i, j in observed) + all_weight / coefficient * sum(
        scaled[i, j] ** 2 for i, j in unobserved
    )
    constant = len(observed) * (1 - 1 / coefficient)
    big_c, big_w = sp.symbols("c w_0'", positive=True)
    return [
        Step(
            "sum of the debiased rows: observed entries get $A s^2 - 2s + 1$ with $A = 1 - c + w_0'$, "
            "unobserved ones $w_0' s^2$ (shown for a 2 x 3 matrix, 3 observed entries)",
            debiased,
            "=",
            reweighted,
        ),
        Step(
            "so it is $1/A$ times plain iALS (confidence 1, unobserved weight $w_0'/A$) at the scores "
            "$A s$, plus a constant: same minimisers up to the scale $1/A$, same rankings",
            debiased,
            "=",
            plain / coefficient + constant,
        ),
        Step(
            "EASE weighs every entry alike: $w_0'/A = w_0'/(1 - c + w_0')$ is 1 when $c = 1$",
            sp.Subs(big_w / (1 - big_c + big_w), big_c, 1),
            "=",
            sp.Integer(1),
        ),
        Step(
            "which happens at $\\tau^+ = 1/(1 + w)$",
            sp.Subs(correction, tau_plus, 1 / (1 + neg_weight)),
            "=",
            sp.Integer(1),
        ),
    ]


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
