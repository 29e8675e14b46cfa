"""Chapter 06_linear_models: the normal equations of iALS and EASE, and the debiased MSE's re-weighting.

:func:`ials_steps`, :func:`ease_instance`, :func:`ease_steps` and :func:`debiased_mse_steps`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp

from .framework import Step, Verdict, combine, is_zero

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
    general_gradient = 2 * (items.T * weights * items + l2 * sp.Identity(k)) * user - 2 * items.T * weights * target

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
            "gradient of one user's objective; zero at the optimum: $(H^\\top C H + \\lambda I)\\, w = H^\\top C y$",
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
            unobserved * items.T * items + sp.MatrixSymbol(r"\sum_{i \in P_u} (c_{ui} - w_0) h_i h_i^\top", k, k),
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
    general_objective = sp.Trace((data_matrix - data_matrix * weights).T * (data_matrix - data_matrix * weights))
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
    reweighted = sum(coefficient * scores[i, j] ** 2 - 2 * scores[i, j] + 1 for i, j in observed) + all_weight * sum(
        scores[i, j] ** 2 for i, j in unobserved
    )
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
