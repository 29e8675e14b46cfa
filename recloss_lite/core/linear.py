"""Linear models fitted in closed form or by alternating least squares: iALS and EASE.

Taught in chapter 06_linear_models. Both minimise a weighted squared loss over the *whole* user-item matrix
``X`` (n_users, n_items) of 0/1 entries (P = the observed entries, s_ui the model's score):

* **iALS** (Hu, Koren & Volinsky 2008, "Collaborative filtering for implicit feedback datasets"; Rendle et al.
  2021, "Revisiting the performance of iALS on item recommendation benchmarks", arXiv 2110.14037), scores
  S = U Vᵀ with U (n_users, k), V (n_items, k)::

      L = sum_{(u,i) in P} c_ui (s_ui - 1)^2 + w0 * sum_{(u,j) not in P} s_uj^2
          + sum_u l2_u |U_u|^2 + sum_i l2_i |V_i|^2,     c_ui = 1 + alpha (or given per entry)

  with l2_u = l2 * (n_u + w0 * n_items)^nu (Rendle et al.'s frequency-scaled regularisation, nu =
  ``reg_exponent``; nu = 0 gives plain l2). Fixing V, row u solves (Hu et al. eq. 4 with the Gramian trick)::

      (w0 VᵀV + sum_{i in P_u} (c_ui - w0) v_i v_iᵀ + l2_u I) U_u = sum_{i in P_u} c_ui v_i

  by batched Cholesky (exact) or a few warm-started conjugate-gradient steps (Takács, Pilászy & Tikk 2011, the
  ``implicit`` library's default); items likewise with U fixed.
* **EASE** (Steck 2019, "Embarrassingly shallow autoencoders for sparse data", WWW, eq. 8), S = X B with
  B (n_items, n_items), diag(B) = 0, minimising ``|X - X B|_F^2 + l2 |B|_F^2``::

      P = (XᵀX + l2 I)^-1,   B = I - P diag(1 / diag(P))   (so B_ij = -P_ij / P_jj, B_jj = 0).

**Debiased MSE and the "inherently debiased" claim** (Li & Jin, arXiv 2312.08517; only summaries of that paper
could be read, so everything below is derived here). The spec's debiased ``mse`` row loss for a positive
(u, i) is ``(s_ui - 1)^2 + w D[s^2]``, ``D[phi] = (E[phi(s)] - tau+ phi(s_ui)) / (1 - tau+)`` (the floor 0
is left out: quadratic analysis). Take the negatives uniform over all user-item pairs, so every user's
all-item term has the same weight (the paper's "c_u constant" assumption; rho = |P| / (n_users n_items)), and
sum over P::

    L_deb = sum_P (s - 1)^2 - c sum_P s^2 + w0' sum_{all (u,j)} s^2,
    c = w tau+ / (1 - tau+),   w0' = w rho / (1 - tau+).

The correction only re-weights the observed entries (their s^2 coefficient becomes A = 1 - c + w0' instead
of 1 + w rho) and rescales the all-entry weight. Substituting s = s~ / A and multiplying by A shows that L_deb
is, up to a constant, the plain iALS objective with confidence 1 (alpha = 0), ``unobserved_weight = w0' / A`` and
the *same* l2 (factors rescaled by sqrt(A)): its scores are the plain ones divided by A, rankings identical
(:func:`debiased_weights`). Equivalently, for tau+ (1 + w) < 1 it is the *biased* mse with negative weight
w'' = w / (1 - tau+ (1 + w)), scores times (1 - tau+) / (1 - tau+ (1 + w)). Tuning iALS's weights already
spans every debiased objective: that is the sense in which iALS is inherently debiased. A <= 0 makes L_deb
unbounded below (the floor binds). For EASE (linear in B: B -> B / A scales the penalty by 1 / A^2) the same
algebra gives the penalty l2 / A, but EASE weighs observed and unobserved entries equally, so it needs
w0' / A = 1, i.e. c = 1, tau+ = 1 / (1 + w): then L_deb = w0' |X / w0' - X B|^2 + l2 |B|^2, the EASE problem
with l2 / w0' and target X / w0' (B scaled by 1 / w0'). Any other tau+ leaves two weight levels, whose normal
equations differ per item column (no single solve): EASE is the debiased MSE at tau+ = 1 / (1 + w) only. With
negatives uniform over the user's own row instead (the spec's E_j per row, ``negatives="rows"``), user u's
all-item weight is w n_u / (n_items (1 - tau+)); c is still the same for every user, so the w -> w'' map still
holds, but the equivalent biased problem has per-user unobserved weights w'' n_u / n_items, which plain iALS /
EASE match only if every user has the same n_u. In that per-row form, tau+ = n_u / n_items (the row's observed
share) makes D[phi], summed over the row's positives, exactly n_u times the mean of phi over the row's
*unobserved* items: losses whose negatives are the unobserved entries (Hu et al.'s iALS; EASE, which is this
with w = (1 - tau+) / tau+) already are that debiased estimate.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from recloss_lite.core import data

SOLVERS = ("cg", "cholesky")
MEMINFO = Path("/proc/meminfo")
# Rows of the Gram matrix computed per sparse product: bounds the temporaries.
_BLOCK_ROWS = 2048
# Padded entries per chunk of the Cholesky solver (times k floats gathered, and at most this / k systems).
_CHOLESKY_CHUNK_ENTRIES = 1 << 16
_TINY = 1e-30


def _check_finite(values: np.ndarray, what: str) -> None:
    """ValueError naming ``what`` and how many of ``values`` are NaN or inf (counted in row blocks)."""
    bad = sum(
        int(np.count_nonzero(~np.isfinite(values[start : start + _BLOCK_ROWS])))
        for start in range(0, len(values), _BLOCK_ROWS)
    )
    if bad:
        raise ValueError(f"{what} holds {bad} non-finite values (NaN or inf) among its {values.size} values")


def _check_matrix(train: sp.spmatrix | sp.sparray, what: str) -> sp.csr_matrix:
    """Canonical CSR copy of a non-empty 2-D sparse matrix with finite non-negative values, or a ValueError."""
    if not sp.issparse(train) or train.ndim != 2:
        raise ValueError(f"{what} must be a 2-D scipy sparse matrix, got {type(train).__name__}")
    matrix = data.canonical_csr(train, what)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{what} has shape {matrix.shape}: both sides must be >= 1")
    _check_finite(matrix.data, f"{what} {matrix.shape}")
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError(f"{what} has negative entries (min {matrix.data.min()}): expected 0/1 or counts")
    return matrix


def _check_positive(**values: float) -> None:
    for label, value in values.items():
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (real and math.isfinite(value) and value > 0):
            raise ValueError(f"{label}={value}: must be a finite number > 0")


# ------------------------------------------------------------------------------------------------------------
# iALS
# ------------------------------------------------------------------------------------------------------------


def _torch_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Torch sparse CSR tensor from valid (sorted, in-range) index arrays; silences torch's 'beta' notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _row_l2(counts: np.ndarray, n_cols: int, unobserved_weight: float, l2: float, reg_exponent: float) -> np.ndarray:
    """l2_u = l2 * (n_u + w0 * n_cols)^reg_exponent per row (Rendle et al. 2021's frequency scaling)."""
    return l2 * (counts + unobserved_weight * n_cols) ** reg_exponent


@dataclass
class _Rows:
    """One side of an iALS problem in torch form: the rows' observed entries, their confidences, their l2."""

    crow: torch.Tensor  # (n_rows + 1,) int64
    col: torch.Tensor  # (nnz,) int64
    confidence: torch.Tensor  # (nnz,) c_ui
    l2: torch.Tensor  # (n_rows,)
    shape: tuple[int, int]

    def sparse(self, values: torch.Tensor) -> torch.Tensor:
        """Torch CSR matrix (n_rows, n_cols) with this pattern and ``values`` (nnz,)."""
        return _torch_csr(self.crow, self.col, values, self.shape)

    def dots(self, rows: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """(nnz,) rows[u] . fixed[i] at every observed entry (u, i): a sampled dense-dense product."""
        pattern = self.sparse(torch.zeros(self.col.shape[0], dtype=rows.dtype, device=rows.device))
        return torch.sparse.sampled_addmm(pattern, rows, fixed.T, beta=0.0).values()


def _as_rows(
    confidence: sp.csr_matrix,
    unobserved_weight: float,
    l2: float,
    reg_exponent: float,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> _Rows:
    """Torch form of a (canonical CSR) confidence matrix, in ``dtype`` on ``device``."""
    counts = np.diff(confidence.indptr)
    l2_rows = _row_l2(counts, confidence.shape[1], unobserved_weight, l2, reg_exponent)
    return _Rows(
        crow=torch.from_numpy(confidence.indptr.astype(np.int64)).to(device),
        col=torch.from_numpy(confidence.indices.astype(np.int64)).to(device),
        confidence=torch.from_numpy(confidence.data).to(device, dtype),
        l2=torch.from_numpy(l2_rows).to(device, dtype),
        shape=confidence.shape,
    )


def _solve_cg(
    rows: _Rows, fixed: torch.Tensor, unobserved_weight: float, initial: torch.Tensor, steps: int
) -> torch.Tensor:
    """``steps`` conjugate-gradient steps on all rows' normal equations at once, from ``initial`` (n_rows, k).

    A p = w0 p (FᵀF) + l2_u p + sum_i (c_ui - w0) (f_i . p) f_i: the dense Gramian part is one (n_rows, k) @
    (k, k) product, the sparse part a sampled dense-dense product and a sparse @ dense product.
    """
    gram = unobserved_weight * (fixed.T @ fixed)
    offset = rows.confidence - unobserved_weight
    l2 = rows.l2[:, None]

    def dense_part(vectors: torch.Tensor) -> torch.Tensor:
        return vectors @ gram + l2 * vectors

    solution = initial.clone()
    # r = b - A x with b_u = sum_i c_ui f_i: both sparse parts in one product (the implicit library's trick).
    observed = rows.confidence - offset * rows.dots(solution, fixed)
    residual = rows.sparse(observed) @ fixed - dense_part(solution)
    direction = residual.clone()
    residual_norm = (residual * residual).sum(1)
    for _ in range(steps):
        product = rows.sparse(offset * rows.dots(direction, fixed)) @ fixed + dense_part(direction)
        step = residual_norm / (direction * product).sum(1).clamp_min(_TINY)
        solution += step[:, None] * direction
        residual -= step[:, None] * product
        new_norm = (residual * residual).sum(1)
        direction = residual + (new_norm / residual_norm.clamp_min(_TINY))[:, None] * direction
        residual_norm = new_norm
    return solution


def _solve_cholesky(rows: _Rows, fixed: torch.Tensor, unobserved_weight: float) -> torch.Tensor:
    """Exact solve of all rows' normal equations by batched Cholesky.

    Rows are sorted by their number of entries and taken in chunks of similar length, each padded to its
    longest row (padding points at an extra zero row of ``fixed``), so every chunk's systems are one batched
    product (B, k, L) @ (B, L, k) instead of per-entry outer products.
    """
    n_rows, factors, device = rows.shape[0], fixed.shape[1], fixed.device
    gram = unobserved_weight * (fixed.T @ fixed)
    # one extra entry (column n_cols, confidence 0) and one extra zero row of ``fixed`` serve as padding
    padded = torch.cat([fixed, torch.zeros(1, factors, dtype=fixed.dtype, device=device)])
    padded_col = torch.cat([rows.col, torch.tensor([fixed.shape[0]], device=device)])
    padded_confidence = torch.cat([rows.confidence, torch.zeros(1, dtype=rows.confidence.dtype, device=device)])
    counts = rows.crow.diff()
    order = torch.argsort(counts, stable=True)
    sorted_counts = counts[order].cpu().numpy()
    eye = torch.eye(factors, dtype=fixed.dtype, device=device)
    solution = torch.empty(n_rows, factors, dtype=fixed.dtype, device=device)
    start = 0
    while start < n_rows:
        # rows up to 25% longer than the chunk's shortest, at most _CHOLESKY_CHUNK_ENTRIES * k floats gathered
        longest = int(np.searchsorted(sorted_counts, math.ceil(1.25 * max(sorted_counts[start], 1)), "right"))
        length = max(int(sorted_counts[longest - 1]), 1)
        stop = min(longest, start + max(1, _CHOLESKY_CHUNK_ENTRIES // max(length, factors)))
        chunk = order[start:stop]
        length = max(int(sorted_counts[stop - 1]), 1)
        positions = torch.arange(length, device=device)
        valid = positions[None, :] < counts[chunk, None]
        entries = torch.where(valid, rows.crow[chunk, None] + positions[None, :], rows.col.shape[0])
        confidence = padded_confidence[entries]  # (B, L)
        gathered = padded[padded_col[entries]]  # (B, L, k)
        weighted = (confidence - unobserved_weight)[:, :, None] * gathered
        system = gathered.transpose(1, 2) @ weighted + gram + rows.l2[chunk, None, None] * eye
        rhs = (confidence[:, None, :] @ gathered).transpose(1, 2)
        solution[chunk] = torch.cholesky_solve(rhs, torch.linalg.cholesky(system))[:, :, 0]
        start = stop
    return solution


def _solve(
    rows: _Rows, fixed: torch.Tensor, unobserved_weight: float, solver: str, initial: torch.Tensor, cg_steps: int
) -> torch.Tensor:
    if solver == "cg":
        return _solve_cg(rows, fixed, unobserved_weight, initial, cg_steps)
    return _solve_cholesky(rows, fixed, unobserved_weight)


def _check_solver(solver: str, cg_steps: int) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: allowed values are {SOLVERS}")
    if isinstance(cg_steps, bool) or not isinstance(cg_steps, int) or cg_steps < 1:
        raise ValueError(f"cg_steps={cg_steps}: must be an integer >= 1")


def ials_solve(
    confidence: sp.spmatrix,
    fixed: torch.Tensor,
    unobserved_weight: float,
    l2: float,
    solver: str = "cholesky",
    initial: torch.Tensor | None = None,
    cg_steps: int = 3,
    reg_exponent: float = 0.0,
) -> torch.Tensor:
    """One iALS half-step: each row's least-squares solution with the other side ``fixed``.

    Row u minimises ``sum_{i in P_u} c_ui (f_i.x - 1)^2 + w0 sum_{j not in P_u} (f_j.x)^2 + l2_u |x|^2``
    (Hu et al. 2008 eq. 4 with the Gramian trick); ``confidence`` (n_rows, n_cols) holds c_ui > 0 at the
    observed entries, ``fixed`` is (n_cols, k); returns (n_rows, k) in ``fixed``'s dtype (float64 gives exact
    references). ``solver="cg"`` runs ``cg_steps`` conjugate-gradient steps from ``initial`` (zeros if None).
    Chapter 06_linear_models.
    """
    _check_solver(solver, cg_steps)
    matrix = _check_matrix(confidence, "confidence")
    if fixed.ndim != 2 or fixed.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"fixed has shape {tuple(fixed.shape)}; expected ({matrix.shape[1]}, k) for "
            f"confidence of shape {matrix.shape}"
        )
    if matrix.nnz and matrix.data.min() <= 0:
        raise ValueError("confidence: observed entries need c_ui > 0")
    _check_positive(l2=l2)
    if not unobserved_weight >= 0:
        raise ValueError(f"unobserved_weight={unobserved_weight}: must be >= 0")
    expected = (matrix.shape[0], fixed.shape[1])
    if initial is None:
        initial = torch.zeros(expected, dtype=fixed.dtype, device=fixed.device)
    elif tuple(initial.shape) != expected:
        raise ValueError(f"initial has shape {tuple(initial.shape)}; expected {expected}")
    rows = _as_rows(matrix, unobserved_weight, l2, reg_exponent, fixed.dtype, fixed.device)
    return _solve(rows, fixed, unobserved_weight, solver, initial.to(fixed.device, fixed.dtype), cg_steps)


class IALS:
    """Implicit alternating least squares, scores S = U Vᵀ (Hu et al. 2008; Rendle et al. 2021).

    Minimises ``sum_P c_ui (s_ui - 1)^2 + w0 sum_{not P} s^2 + l2 (|U|^2 + |V|^2)`` (module docstring;
    c_ui = 1 + alpha * x_ui unless ``fit`` gets per-entry ``weights``) by alternating exact (``cholesky``) or
    conjugate-gradient (``cg``, ``cg_steps`` warm-started steps) row solves, users then items, in torch
    float32. Attributes after ``fit``: ``user_factors`` (n_users, k), ``item_factors`` (n_items, k). Taught in
    chapter 06_linear_models; :func:`debiased_weights` maps the debiased MSE onto these weights. The defaults
    were tuned on Gowalla (Recall@20 0.150 with 64 factors; only w0 / c and l2 / c matter, so alpha = 0).

    Args:
        factors: k.
        alpha: confidence offset of observed entries (c = 1 + alpha * x_ui), > -1.
        l2: L2 penalty, > 0 (per row scaled by (n_u + w0 n)^reg_exponent).
        unobserved_weight: w0 >= 0, the weight of every unobserved entry.
        iterations: sweeps of ``fit``.
        solver: ``"cg"`` or ``"cholesky"``; cg_steps: CG steps per half-step.
        reg_exponent: nu of Rendle et al.'s frequency-scaled regularisation (0 = plain l2).
        init_std: standard deviation of the normal initial factors; seed: their seed (drawn on the CPU, so
            every device starts from the same factors).
        device: where the factors and the sparse matrices (torch CSR) live and the solves run (``"cpu"``,
            ``"cuda"``, ``"cuda:N"``).
    """

    name = "ials"

    def __init__(
        self,
        factors: int = 64,
        alpha: float = 0.0,
        l2: float = 3.0,
        unobserved_weight: float = 0.01,
        iterations: int = 10,
        solver: str = "cg",
        cg_steps: int = 3,
        reg_exponent: float = 0.0,
        init_std: float = 0.01,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if isinstance(factors, bool) or not isinstance(factors, int) or factors < 1:
            raise ValueError(f"factors={factors}: must be an integer >= 1")
        if not alpha > -1:
            raise ValueError(f"alpha={alpha}: must be > -1 (confidence 1 + alpha > 0)")
        _check_positive(l2=l2, init_std=init_std)
        if not unobserved_weight >= 0:
            raise ValueError(f"unobserved_weight={unobserved_weight}: must be >= 0")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations={iterations}: must be an integer >= 0")
        _check_solver(solver, cg_steps)
        if not reg_exponent >= 0:
            raise ValueError(f"reg_exponent={reg_exponent}: must be >= 0")
        self.factors, self.alpha, self.l2 = factors, alpha, l2
        self.unobserved_weight, self.iterations = unobserved_weight, iterations
        self.solver, self.cg_steps, self.reg_exponent = solver, cg_steps, reg_exponent
        self.init_std, self.seed, self.device = init_std, seed, torch.device(device)
        self.user_factors: torch.Tensor | None = None
        self.item_factors: torch.Tensor | None = None
        self._users: _Rows | None = None
        self._items: _Rows | None = None
        self._sweeps = 0

    def start(self, train: sp.spmatrix, weights: sp.spmatrix | None = None) -> IALS:
        """Set up the problem and draw the initial factors, without a sweep (``fit`` = ``start`` + sweeps).

        ``train`` (n_users, n_items) sparse; ``weights`` (same shape and pattern) are per-entry confidences
        c_ui > 0 replacing 1 + alpha * x_ui.
        """
        matrix = _check_matrix(train, "train")
        if weights is None:
            confidence = matrix.astype(np.float32)
            confidence.data = 1.0 + self.alpha * confidence.data
        else:
            confidence = _check_matrix(weights, "weights").astype(np.float32)
            same = (
                confidence.shape == matrix.shape
                and np.array_equal(confidence.indptr, matrix.indptr)
                and np.array_equal(confidence.indices, matrix.indices)
            )
            if not same:
                raise ValueError(
                    f"weights (shape {confidence.shape}, {confidence.nnz} entries) must have "
                    f"the pattern of train (shape {matrix.shape}, {matrix.nnz} entries)"
                )
        if confidence.nnz and confidence.data.min() <= 0:
            raise ValueError("weights: every observed entry needs a confidence > 0")
        args = (self.unobserved_weight, self.l2, self.reg_exponent, torch.float32, self.device)
        self._users = _as_rows(confidence, *args)
        self._items = _as_rows(confidence.T.tocsr(), *args)
        generator = torch.Generator().manual_seed(self.seed)
        n_users, n_items = matrix.shape
        self.user_factors = (torch.randn(n_users, self.factors, generator=generator) * self.init_std).to(self.device)
        self.item_factors = (torch.randn(n_items, self.factors, generator=generator) * self.init_std).to(self.device)
        self._sweeps = 0
        return self

    def fit_iteration(self) -> IALS:
        """One sweep: solve all users with the items fixed, then all items with the users fixed.

        FloatingPointError if a factor became NaN or inf (the solves diverged: raise ``l2``)."""
        if self._users is None or self._items is None or self.user_factors is None or self.item_factors is None:
            raise ValueError("call fit(train) or start(train) before fit_iteration()")
        self.user_factors = _solve(
            self._users, self.item_factors, self.unobserved_weight, self.solver, self.user_factors, self.cg_steps
        )
        self.item_factors = _solve(
            self._items, self.user_factors, self.unobserved_weight, self.solver, self.item_factors, self.cg_steps
        )
        self._sweeps += 1
        bad = {
            side: int((~torch.isfinite(factors)).sum())
            for side, factors in (("user", self.user_factors), ("item", self.item_factors))
        }
        if any(bad.values()):
            raise FloatingPointError(
                f"iALS sweep {self._sweeps}: {bad['user']} user and {bad['item']} item factor values are NaN or "
                f"inf; the least-squares solves diverged: use a larger l2 (now {self.l2}) or smaller "
                f"confidences / unobserved_weight (now {self.unobserved_weight})"
            )
        return self

    def fit(
        self,
        train: sp.spmatrix,
        weights: sp.spmatrix | None = None,
        callback: Callable[[int, IALS], object] | None = None,
    ) -> IALS:
        """``start`` then ``iterations`` sweeps; ``callback(iteration, self)`` (1-based) after each sweep."""
        self.start(train, weights)
        for iteration in range(1, self.iterations + 1):
            self.fit_iteration()
            if callback is not None:
                callback(iteration, self)
        return self

    def loss(self) -> float:
        """The objective L of the current factors (module docstring), in float64 via the Gramian trick:

        sum_P [c (s - 1)^2 - w0 s^2] + w0 tr(UᵀU VᵀV) + sum_u l2_u |U_u|^2 + sum_i l2_i |V_i|^2.
        """
        if self._users is None or self._items is None or self.user_factors is None or self.item_factors is None:
            raise ValueError("call fit(train) before loss()")
        users, items = self.user_factors.double(), self.item_factors.double()
        scores = self._users.dots(users, items)
        confidence = self._users.confidence.double()
        observed = (confidence * (scores - 1) ** 2 - self.unobserved_weight * scores**2).sum()
        everything = self.unobserved_weight * ((users.T @ users) * (items.T @ items)).sum()
        penalty = 0.0
        for side, factors in ((self._users, users), (self._items, items)):
            counts = side.crow.diff().cpu().numpy()
            l2 = _row_l2(counts, side.shape[1], self.unobserved_weight, self.l2, self.reg_exponent)
            penalty += float((torch.from_numpy(l2).to(factors.device) * (factors**2).sum(1)).sum())
        return float(observed + everything) + penalty

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores (U, n_items) = U[users] Vᵀ for a LongTensor of users (U,), on the model's device."""
        if self.user_factors is None or self.item_factors is None:
            raise ValueError("call fit(train) before scores()")
        with torch.no_grad():
            return self.user_factors[users.to(self.device)] @ self.item_factors.T


def bench_ials(
    dataset: str | data.Dataset,
    factors: int = 64,
    iterations: int = 3,
    solver: str = "cg",
    cg_steps: int = 3,
    device: str = "cpu",
) -> dict[str, float | int | str]:
    """Time iALS sweeps (users + items) on a data set: a name for :func:`recloss_lite.core.data.load` or a Dataset.

    Returns ``seconds_per_iteration`` (the median over ``iterations`` sweeps after the set-up),
    ``setup_seconds``, the sizes and torch's thread count; ``recloss-lite bench`` prints it (chapter
    06_linear_models).
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations={iterations}: must be an integer >= 1")
    ds = data.load(dataset) if isinstance(dataset, str) else dataset
    start = time.perf_counter()
    model = IALS(factors=factors, solver=solver, cg_steps=cg_steps, device=device).start(ds.train)
    setup = time.perf_counter() - start
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        model.fit_iteration()
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        seconds.append(time.perf_counter() - start)
    return {
        "dataset": ds.name,
        "users": ds.train.shape[0],
        "items": ds.train.shape[1],
        "interactions": ds.train.nnz,
        "factors": factors,
        "solver": solver,
        "cg_steps": cg_steps,
        "threads": torch.get_num_threads(),
        "setup_seconds": setup,
        "seconds_per_iteration": float(np.median(seconds)),
    }


# ------------------------------------------------------------------------------------------------------------
# EASE
# ------------------------------------------------------------------------------------------------------------


def memory_available_bytes() -> int:
    """MemAvailable of /proc/meminfo in bytes (Linux): what a new allocation can get without swapping."""
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{MEMINFO}: no MemAvailable line")


def ease_memory_bytes(n_items: int, itemsize: int = 4, n_users: int | None = None) -> int:
    """Peak bytes of :meth:`EASE.fit`: ONE (n_items, n_items) matrix (Gram, inverse and B share it, in place)
    plus two row blocks of temporaries; with ``n_users`` below ``WOODBURY_BELOW * n_items`` (the users' side,
    :func:`ease_weights_from_users`), also the (n_users, n_users) inverse and its blocks."""
    needed = n_items * n_items * itemsize + 2 * _BLOCK_ROWS * n_items * itemsize
    if n_users is not None and _from_users(n_users, n_items):
        needed += (n_users * n_users + 2 * _BLOCK_ROWS * n_users) * itemsize
    return needed


def check_ease_memory(
    n_items: int, itemsize: int = 4, available: int | None = None, n_users: int | None = None
) -> None:
    """Raise MemoryError, before allocating anything, if EASE on ``n_items`` items needs more than available."""
    needed = ease_memory_bytes(n_items, itemsize, n_users)
    available = memory_available_bytes() if available is None else available
    if needed > available:
        raise MemoryError(
            f"EASE with {n_items} items needs {needed / 2**30:.1f} GiB (one {n_items}x{n_items} matrix of "
            f"{itemsize}-byte floats plus blocks) but only {available / 2**30:.1f} GiB is available "
            "(MemAvailable in /proc/meminfo)"
        )


def gram_matrix(train: sp.spmatrix, dtype: type = np.float32) -> np.ndarray:
    """Dense XᵀX (n_items, n_items), C order, built block by block from sparse products (no dense X)."""
    matrix = _check_matrix(train, "train").astype(dtype)
    n_items = matrix.shape[1]
    transposed = matrix.T.tocsr()
    gram = np.zeros((n_items, n_items), dtype=dtype)
    for start in range(0, n_items, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n_items)
        (transposed[start:stop] @ matrix).toarray(out=gram[start:stop])
    return gram


def _symmetrize_from_upper(matrix: np.ndarray) -> None:
    """Copy the upper triangle of a square C-ordered array onto its lower triangle, in place, tile by tile."""
    n = len(matrix)
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        for top in range(0, start, _BLOCK_ROWS):
            matrix[start:stop, top : top + _BLOCK_ROWS] = matrix[top : top + _BLOCK_ROWS, start:stop].T
        tile = matrix[start:stop, start:stop]
        tile[...] = np.triu(tile) + np.triu(tile, 1).T


def spd_inverse_(matrix: np.ndarray, what: str) -> np.ndarray:
    """The inverse of a symmetric positive definite C-ordered float32 / float64 array, IN PLACE (returned).

    LAPACK on the column-major view of the same memory (a C-ordered array's transpose; the matrix is symmetric), so
    no copy of it is ever made: potrf through torch (MKL), then potri through scipy, which inverts from the
    Cholesky factor with half the arithmetic of a general inverse; the triangle it leaves is copied over. ValueError
    naming ``what`` where the matrix is not positive definite. Chapter 06_linear_models.
    """
    from scipy.linalg import lapack

    view = torch.from_numpy(matrix).T
    info = torch.empty((), dtype=torch.int32)
    torch.linalg.cholesky_ex(view, out=(view, info))  # lower factor of the view: the upper triangle of matrix
    if int(info) != 0:
        raise ValueError(f"EASE: {what} is not positive definite (potrf info={int(info)})")
    potri = lapack.spotri if matrix.dtype == np.float32 else lapack.dpotri
    inverse, info = potri(matrix.T, lower=1, overwrite_c=1)
    if info != 0:
        raise ValueError(f"EASE: {what} is singular (potri info={info})")
    if not np.shares_memory(inverse, matrix):  # LAPACK was handed a copy: bring the result back
        matrix.T[...] = inverse
    _symmetrize_from_upper(matrix)
    return matrix


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from the Gram matrix XᵀX, IN PLACE: ``gram`` is overwritten and returned as B.

    P = (G + l2 I)^-1 by one Cholesky factorisation and inversion in place (:func:`spd_inverse_`); B = I - P
    diag(1/diag P), i.e. B_ij = -P_ij / P_jj and B_jj = 0 (Steck 2019 eq. 8). ``gram`` (n, n) C-contiguous float32
    or float64; the dtype is kept. Chapter 06_linear_models.
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or not gram.flags.c_contiguous:
        raise ValueError(f"gram must be a square C-contiguous array, got shape {gram.shape}")
    _check_positive(l2=l2)
    _check_finite(gram, "gram")
    gram[np.diag_indices_from(gram)] += l2
    spd_inverse_(gram, f"XᵀX + l2 I with l2={l2} (raise l2)")
    gram /= -np.diagonal(gram).copy()[None, :]
    gram[np.diag_indices_from(gram)] = 0.0
    return gram


# Below this ratio of users to items, EASE inverts on the users' side (ease_weights_from_users).
WOODBURY_BELOW = 0.9


def _from_users(n_users: int, n_items: int) -> bool:
    return n_users < WOODBURY_BELOW * n_items


def ease_weights_from_users(train: sp.spmatrix, l2: float) -> np.ndarray:
    """EASE's B (n_items, n_items) float32 from the users' side, for fewer users than items.

    With X (n_users, n_items), Woodbury's identity gives P = (XᵀX + l2 I)^-1 = (I - T) / l2 with T = Xᵀ (XXᵀ +
    l2 I)^-1 X, so that B_ij = -P_ij / P_jj = T_ij / (1 - T_jj) (i != j), B_jj = 0: one (n_users, n_users)
    inverse (:func:`spd_inverse_`), (n_users / n_items)^3 of the arithmetic of inverting on the items' side, then
    T block by block from sparse products. The same B as :func:`ease_weights` up to float32 rounding (the test
    compares both with a float64 reference). Chapter 06_linear_models.
    """
    _check_positive(l2=l2)
    matrix = _check_matrix(train, "train").astype(np.float32)
    inner = gram_matrix(matrix.T.tocsr())  # X Xᵀ (n_users, n_users)
    inner[np.diag_indices_from(inner)] += l2
    spd_inverse_(inner, f"XXᵀ + l2 I with l2={l2} (raise l2)")
    n_items = matrix.shape[1]
    columns = matrix.T.tocsr()  # row j: the users of item j
    all_columns, inverse = _to_torch_csr(columns), torch.from_numpy(inner)
    weights = np.empty((n_items, n_items), dtype=np.float32)
    for start in range(0, n_items, _BLOCK_ROWS):  # torch's sparse @ dense products (threaded), block by block
        stop = min(start + _BLOCK_ROWS, n_items)
        solved = _to_torch_csr(columns[start:stop]) @ inverse  # X_Jᵀ (XXᵀ + l2 I)^-1: (rows, n_users)
        weights[start:stop] = (all_columns @ solved.T.contiguous()).T.numpy()  # T[J, :] = that @ X
    del inner, inverse, solved
    weights /= (1.0 - np.diagonal(weights)).copy()[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def _ease_weights_torch(train: sp.csr_matrix, l2: float, device: torch.device) -> torch.Tensor:
    """EASE's B computed by torch on ``device`` (a GPU): XᵀX from the sparse CSR X there, then Cholesky and its
    inverse (as :func:`ease_weights`)."""
    gram = _to_torch_csr(train.T.tocsr(), device) @ _to_torch_csr(train, device).to_dense()
    gram.diagonal().add_(l2)
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        raise ValueError(f"EASE: XᵀX + l2 I is not positive definite (potrf info={int(info)}); raise l2={l2}")
    del gram
    weights = torch.cholesky_inverse(factor)
    del factor
    weights /= -weights.diagonal().clone()[None, :]
    weights.diagonal().zero_()
    return weights


def _to_torch_csr(rows: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor on ``device``."""
    return _torch_csr(
        torch.from_numpy(rows.indptr.astype(np.int64)),
        torch.from_numpy(rows.indices.astype(np.int64)),
        torch.from_numpy(rows.data),
        rows.shape,
    ).to(device)


class EASE:
    """EASE, scores S = X B with the closed-form B of Steck 2019 (chapter 06_linear_models).

    On the CPU, ``fit`` checks the memory first (one (n_items, n_items) float32 matrix, :func:`check_ease_memory`),
    then computes B in place: from the items' side (XᵀX, inverted in place: :func:`ease_weights`) or, with fewer
    users than items, from the users' side (:func:`ease_weights_from_users`, less arithmetic); ``weights`` = B
    (n_items, n_items) as a torch tensor. On a GPU (``device="cuda"``) torch does the same there. ``scores`` is the
    sparse product X[users] @ B (the users' rows are never densified), on the model's device.

    Args:
        l2: the penalty lambda > 0 (BARS: 80 on Gowalla, 300 on Yelp2018, 50 on Amazon-Book).
        device: where B lives and is computed (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
    """

    name = "ease"

    def __init__(self, l2: float = 500.0, device: str = "cpu") -> None:
        _check_positive(l2=l2)
        self.l2, self.device = l2, torch.device(device)
        self.weights: torch.Tensor | None = None
        self._train: sp.csr_matrix | None = None

    def fit(self, train: sp.spmatrix) -> EASE:
        """Closed-form fit on ``train`` (n_users, n_items) sparse; MemoryError if B cannot fit in memory."""
        if not sp.issparse(train) or train.ndim != 2:
            raise ValueError(f"train must be a 2-D scipy sparse matrix, got {type(train).__name__}")
        n_users, n_items = train.shape
        if self.device.type == "cpu":
            check_ease_memory(n_items, n_users=n_users)
        self._train = _check_matrix(train, "train").astype(np.float32)
        if self.device.type != "cpu":
            self.weights = _ease_weights_torch(self._train, self.l2, self.device)
        elif _from_users(n_users, n_items):
            self.weights = torch.from_numpy(ease_weights_from_users(self._train, self.l2))
        else:
            self.weights = torch.from_numpy(ease_weights(gram_matrix(self._train), self.l2))
        return self

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores (U, n_items) = X[users] @ B for a LongTensor of users (U,): a sparse @ dense product."""
        if self.weights is None or self._train is None:
            raise ValueError("call fit(train) before scores()")
        rows = _to_torch_csr(self._train[users.cpu().numpy()], self.device)
        with torch.no_grad():
            return rows @ self.weights


# ------------------------------------------------------------------------------------------------------------
# Debiased MSE: the re-parameterisation and direct reference solvers
# ------------------------------------------------------------------------------------------------------------


def debiased_weights(
    neg_weight: float, tau_plus: float, density: float, l2: float, model: str = "ials"
) -> dict[str, float]:
    """Map the debiased-MSE objective onto a plain iALS / EASE problem with the same minimisers up to scale.

    Derived here (module docstring; Li & Jin 2312.08517 state the claim, their text was unavailable). With
    c = w tau+ / (1 - tau+), w0' = w rho / (1 - tau+), A = 1 - c + w0' and rho = ``density`` = |P| / (n_users
    n_items), the debiased objective equals, up to a constant, the plain one with confidence 1 (alpha 0),
    ``unobserved_weight`` = w0' / A and ``l2`` (iALS: unchanged, factors times sqrt(A); EASE: l2 / A, B times
    A); its scores are ``score_scale`` = 1 / A times the plain ones. ``neg_weight_plain`` = w / (1 - tau+
    (1 + w)) is the biased mse weight with the same minimisers (inf when tau+ (1 + w) >= 1). ``model="ease"``
    needs tau+ = 1 / (1 + w) (unobserved weight 1, EASE's own weighting); otherwise ValueError. Chapter
    06_linear_models (the debiasing of chapter 05_debiasing applied to full-matrix losses).
    """
    _check_positive(neg_weight=neg_weight, l2=l2)
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus={tau_plus}: must lie in [0, 1)")
    if not 0 < density <= 1:
        raise ValueError(f"density={density}: must lie in (0, 1]")
    if model not in ("ials", "ease"):
        raise ValueError(f"model={model!r}: allowed values are ('ials', 'ease')")
    neg_weight, tau_plus, density, l2 = float(neg_weight), float(tau_plus), float(density), float(l2)
    correction = neg_weight * tau_plus / (1 - tau_plus)
    all_weight = neg_weight * density / (1 - tau_plus)
    observed = 1 - correction + all_weight
    if observed <= 0:
        raise ValueError(
            f"tau_plus={tau_plus}, neg_weight={neg_weight}, density={density}: the observed entries' "
            f"coefficient {observed:.4g} <= 0: the debiased objective is unbounded below (its floor 0 binds)"
        )
    unobserved = all_weight / observed
    if model == "ease" and not math.isclose(unobserved, 1.0, rel_tol=1e-9):
        raise ValueError(
            "EASE matches the debiased MSE only at tau_plus = 1 / (1 + neg_weight) = "
            f"{1 / (1 + neg_weight):.6g}; tau_plus={tau_plus} gives unobserved weight {unobserved:.6g} != 1 "
            "(a weighted least-squares problem with a different Gram matrix per item: no single-solve form)"
        )
    remainder = 1 - tau_plus * (1 + neg_weight)
    return {
        "correction": correction,
        "all_weight": all_weight,
        "observed_coefficient": observed,
        "unobserved_weight": unobserved,
        "l2": l2 if model == "ials" else l2 / observed,
        "score_scale": 1 / observed,
        "neg_weight_plain": neg_weight / remainder if remainder > 0 else math.inf,
    }


NEGATIVES = ("pairs", "rows")


def debiased_mse_coefficients(
    train: np.ndarray, neg_weight: float, tau_plus: float, negatives: str = "pairs"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry coefficients of the full debiased-MSE objective, built term by term from the loss formula.

    Summing ``(s_ui - 1)^2 + w (E[s^2] - tau+ s_ui^2) / (1 - tau+)`` over the observed (u, i) of the dense 0/1
    matrix ``train`` (n_users, n_items) gives ``sum quad s^2 - 2 sum lin s + const``; E is uniform over all
    user-item pairs (``negatives="pairs"``) or over the items of row u (``"rows"``, the spec's E_j). Returns
    (quad, lin), both (n_users, n_items) float64. Chapter 06_linear_models.
    """
    observed = np.asarray(train, dtype=np.float64)
    if observed.ndim != 2 or not np.isin(observed, (0.0, 1.0)).all():
        raise ValueError(f"train must be a dense 0/1 matrix, got shape {observed.shape}")
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus={tau_plus}: must lie in [0, 1)")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives={negatives!r}: allowed values are {NEGATIVES}")
    _check_positive(neg_weight=neg_weight)
    per_positive_row = neg_weight / (1 - tau_plus)
    if negatives == "pairs":
        positive_share = observed.sum() / observed.size
    else:
        positive_share = observed.sum(axis=1, keepdims=True) / observed.shape[1]
    quad = observed.copy()  # (s - 1)^2 of every positive row
    quad += per_positive_row * positive_share  # every positive row's E[s^2] term, summed over the rows
    quad -= per_positive_row * tau_plus * observed  # each row's own positive, subtracted
    return quad, observed.copy()


def solve_debiased_rows(
    train: np.ndarray, fixed: np.ndarray, neg_weight: float, tau_plus: float, l2: float, negatives: str = "pairs"
) -> np.ndarray:
    """Exact minimiser (n_users, k) of the debiased-MSE objective over the user factors, items ``fixed``.

    Dense float64 reference, independent of the iALS code: per user, (Fᵀ diag(quad_u) F + l2 I) x = Fᵀ lin_u
    with the coefficients of :func:`debiased_mse_coefficients`; ``fixed`` is (n_items, k). Chapter
    06_linear_models.
    """
    quad, lin = debiased_mse_coefficients(train, neg_weight, tau_plus, negatives)
    fixed = np.asarray(fixed, dtype=np.float64)
    systems = np.einsum("ji,uj,jk->uik", fixed, quad, fixed) + l2 * np.eye(fixed.shape[1])
    return np.linalg.solve(systems, (lin @ fixed)[:, :, None])[:, :, 0]


def solve_debiased_linear(train: np.ndarray, neg_weight: float, tau_plus: float, l2: float) -> np.ndarray:
    """Exact minimiser B (n_items, n_items), diag(B) = 0, of the debiased-MSE objective for S = X B + l2|B|^2.

    Dense float64 reference: item column j solves its own weighted ridge regression on the other items,
    (X_-jᵀ diag(quad_:j) X_-j + l2 I) b = X_-jᵀ lin_:j (one solve per item: small matrices only). Chapter
    06_linear_models.
    """
    quad, lin = debiased_mse_coefficients(train, neg_weight, tau_plus)
    observed = np.asarray(train, dtype=np.float64)
    n_items = observed.shape[1]
    weights = np.zeros((n_items, n_items))
    for item in range(n_items):
        others = np.arange(n_items) != item
        inputs = observed[:, others]
        system = inputs.T @ (quad[:, item, None] * inputs) + l2 * np.eye(n_items - 1)
        weights[others, item] = np.linalg.solve(system, inputs.T @ lin[:, item])
    return weights
