"""The claim framework of the book's derivations: verdicts, steps, :class:`Claim` and :func:`show`.

Every statement of chapter 03_bounds is a :class:`Claim`: its LaTeX statement, the symbolic steps of its
derivation (each a :class:`Step` whose sympy verdict is ``True``, ``False`` or ``None`` = undecided), a
numeric check over random and adversarial inputs in numpy float64 (log-sum-exp stable) that reports the
smallest margin found, and its two sides as functions of N or of the score gap for plotting. Chapters
04_hardness, 05_debiasing and 06_linear_models state their derivations as lists of :class:`Step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

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
