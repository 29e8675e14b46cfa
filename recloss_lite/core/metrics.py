"""Top-k ranking metrics: full ranking and sampled leave-one-out (taught in chapter 01_data).

Following RecBole, the excluded (training) items of a batch of users are masked to -inf, ``torch.topk`` runs
once with the largest cut-off, and every metric is derived from the boolean hit matrix ``hits[u, r]`` = "the
item ranked ``r`` (0-based) for user ``u`` is a test item". Definitions (LightGCN / RecBole):

* recall@K = hits in the top K / |test|, precision@K = hits in the top K / K, hr@K = 1 if a hit in the top K;
* ndcg@K = DCG / IDCG with binary gains: DCG = sum over hits of 1 / log2(r + 2), IDCG = the DCG of
  min(|test|, K) hits at ranks 0, 1, ...

Averages are over users with a non-empty test set. Scores must be finite: NaN (which ``torch.topk`` ranks
first) or +-inf raise ValueError naming the count and the first user; remove items from a ranking with
``exclude`` (the -inf masking is internal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch

from . import kernels
from .data import canonical_csr, entry_rows

METRICS = ("recall", "ndcg", "hr", "precision")
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks={ks}: expected a non-empty sequence of positive integers")
    return tuple(int(k) for k in ks)


def _as_rows(rows: sp.spmatrix | sp.sparray | Sequence[Sequence[int]], shape: tuple[int, int], what: str):
    """``rows`` (CSR of exactly ``shape`` or a list of item lists, one per row) as a canonical CSR matrix."""
    if sp.issparse(rows):
        sparse = cast("sp.spmatrix | sp.sparray", rows)  # what issparse checked (mypy: scipy has no types here)
        if sparse.shape != shape:
            raise ValueError(f"{what} has shape {tuple(sparse.shape)} but scores have shape {shape}")
        matrix = sp.csr_matrix(sparse, copy=True)
    else:
        if len(rows) != shape[0]:
            raise ValueError(f"{what} has {len(rows)} item lists but scores have shape {shape}")
        lengths = [len(items) for items in rows]
        items = np.fromiter((item for items in rows for item in items), dtype=np.int64, count=sum(lengths))
        if items.size and (items.min() < 0 or items.max() >= shape[1]):
            raise ValueError(f"{what} holds item ids outside [0, {shape[1]}) for scores of shape {shape}")
        indptr = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
        matrix = sp.csr_matrix((np.ones(len(items), dtype=np.float32), items, indptr), shape=shape)
    matrix.sum_duplicates()
    return matrix


def _check_finite(scores: torch.Tensor, users: np.ndarray | None = None) -> None:
    """ValueError if ``scores`` (B, I) holds NaN or +-inf: the count and the first affected user (``users[row]``
    for row of ``scores``, or the row itself). Called on the scores as given, before the internal -inf mask."""
    # NaN and inf make the sum non-finite: one reduction (far cheaper than isfinite's full-size temporary on
    # CPU); a sum that merely overflows is then cleared by the exact count.
    if not scores.is_floating_point() or bool(torch.isfinite(scores.sum())):
        return
    bad = ~torch.isfinite(scores)
    if not bad.any():
        return
    row, item = divmod(int(torch.argmax(bad.flatten().to(torch.uint8))), scores.shape[1])
    user = row if users is None else int(users[row])
    what = "scores" if users is None else f"score_fn's scores for a batch of {len(users)} users"
    raise ValueError(
        f"{what} hold {int(bad.sum())} non-finite entries (NaN or inf) of {scores.numel()} (shape "
        f"{tuple(scores.shape)}); first at user {user}, item {item}: {scores[row, item].item()}. A NaN would be "
        "ranked first; leave items out of the ranking with exclude / the train matrix, not with -inf"
    )


def _entries(matrix: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) LongTensors of the stored entries of a canonical CSR matrix, in row-major order."""
    rows = entry_rows(matrix)
    return torch.from_numpy(rows).to(device), torch.from_numpy(matrix.indices.astype(np.int64)).to(device)


def _ranked(
    scores: torch.Tensor, exclude: sp.csr_matrix | None, depth: int, users: np.ndarray | None, owned: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(scores, depth, dim=1)`` with the ``exclude`` entries at -inf, after :func:`_check_finite` (which
    raises for NaN / inf, naming ``users``). The compiled :func:`.kernels.topk` does all three in one pass over a
    float32 CPU matrix without writing it (same values and indices, ties in torch's order); otherwise ``scores`` is
    masked in place where it is ``owned``, else in a copy."""
    if exclude is not None:
        exclude = exclude if exclude.has_sorted_indices else exclude.sorted_indices()
        pointers, excluded = (
            torch.from_numpy(part.astype(np.int64, copy=False)) for part in (exclude.indptr, exclude.indices)
        )
    else:
        pointers, excluded = torch.zeros(scores.shape[0] + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    fast = kernels.topk(scores, depth, pointers, excluded)
    if isinstance(fast, tuple):
        return fast
    _check_finite(scores, users)  # raises where the kernel found a non-finite row
    if exclude is not None and exclude.nnz:
        scores = scores if owned else scores.clone()
        minus_infinity = torch.tensor(-torch.inf, dtype=scores.dtype, device=scores.device)
        scores.index_put_(_entries(exclude, scores.device), minus_infinity)
    return torch.topk(scores, depth, dim=1)


def _per_row_metrics(
    scores: torch.Tensor,
    test: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    ks: tuple[int, ...],
    users: np.ndarray | None = None,
    owned: bool = True,
) -> dict[str, np.ndarray]:
    """Every metric at every cut-off for each row of ``scores`` (U, I); NaN for rows with an empty test set.

    Finite scores only (ValueError naming ``users`` otherwise); the ``exclude`` entries rank last (:func:`_ranked`:
    ``scores`` is masked in place only where ``owned``); one top-``max(ks)``, then hits.
    """
    n_rows, n_items = scores.shape
    depth = min(max(ks), n_items)
    top_values, top_items = _ranked(scores, exclude, depth, users, owned)
    # Membership of (row, item) in the test set via sorted keys row * n_items + item (CSR order is sorted).
    test_rows, test_items = _entries(test, scores.device)
    test_keys = test_rows * n_items + test_items
    keys = torch.arange(n_rows, device=scores.device)[:, None] * n_items + top_items
    if test_keys.numel():
        found = test_keys[torch.searchsorted(test_keys, keys).clamp_(max=test_keys.numel() - 1)] == keys
    else:
        found = torch.zeros_like(keys, dtype=torch.bool)
    hits = (found & (top_values > -torch.inf)).double()  # a masked item never counts as a hit

    discount = 1.0 / torch.log2(torch.arange(depth, dtype=torch.float64, device=scores.device) + 2.0)
    hits_at = hits.cumsum(dim=1)
    dcg_at = (hits * discount).cumsum(dim=1)
    ideal_dcg_at = discount.cumsum(dim=0)
    n_test = torch.from_numpy(np.diff(test.indptr)).to(scores.device, torch.float64)
    empty = n_test == 0
    result = {}
    for k in ks:
        column = min(k, depth) - 1
        n_hits = hits_at[:, column]
        ideal = ideal_dcg_at[(torch.clamp(n_test, 1, column + 1) - 1).long()]
        values = {
            "recall": n_hits / n_test.clamp(min=1),
            "ndcg": dcg_at[:, column] / ideal,
            "hr": (n_hits > 0).double(),
            "precision": n_hits / k,
        }
        for metric in METRICS:
            result[f"{metric}@{k}"] = values[metric].masked_fill(empty, torch.nan).cpu().numpy()
    return result


def _mean_over_rows(parts: list[dict[str, np.ndarray]], keys: Sequence[str] | None = None) -> dict[str, float]:
    """Average per-row metrics (concatenated over batches) over the rows with a non-empty test set."""
    keys = list(parts[0]) if keys is None else list(keys)
    columns = {key: np.concatenate([part[key] for part in parts]) for key in keys}
    evaluated = ~np.isnan(columns[keys[0]])
    if not evaluated.any():
        raise ValueError("no row has a non-empty test set: nothing to average")
    return {key: float(values[evaluated].mean()) for key, values in columns.items()}


def topk_metrics(
    scores: torch.Tensor,
    test: sp.spmatrix | Sequence[Sequence[int]],
    ks: Sequence[int] = (20,),
    exclude: sp.spmatrix | Sequence[Sequence[int]] | None = None,
    reduce: bool = True,
) -> dict[str, float] | dict[str, np.ndarray]:
    """Recall, NDCG, HR and precision at each K in ``ks`` for a (U, I) score matrix (chapter 01_data).

    ``test`` and ``exclude`` give, for each of the U rows, its test items and the items removed from the
    ranking (usually its training items): a CSR matrix of shape (U, I) or a list of U item lists. ``scores``
    is not modified. Keys ``recall@K``, ``ndcg@K``, ``hr@K``, ``precision@K``. With ``reduce`` the values are
    averages over rows with a non-empty test set (ValueError if there is none); without it, float64 arrays of
    shape (U,) with NaN for rows with an empty test set, to be concatenated across batches and averaged with
    ``np.nanmean``. Definitions: LightGCN (He et al., SIGIR 2020) and RecBole, see the module docstring.
    """
    ks = _check_ks(ks)
    scores = torch.as_tensor(scores).detach()
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (users, items), got {tuple(scores.shape)}")
    shape = (int(scores.shape[0]), int(scores.shape[1]))
    test_rows = _as_rows(test, shape, "test")
    exclude_rows = None if exclude is None else _as_rows(exclude, shape, "exclude")
    if not scores.is_floating_point():
        scores = scores.double()
    with torch.no_grad():
        per_row = _per_row_metrics(scores, test_rows, exclude_rows, ks, owned=False)
    return _mean_over_rows([per_row]) if reduce else per_row


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"eval batch_size={batch_size!r}: the number of users scored per call of score_fn (TrainConfig's "
            "eval_batch_size) must be an integer >= 1"
        )


def _scores_for(score_fn: ScoreFn, users: np.ndarray, n_items: int, check: bool = True) -> torch.Tensor:
    """``score_fn``'s scores of ``users``, shape-checked, and checked finite unless ``check`` is False (where
    :func:`_per_row_metrics` checks them in its pass)."""
    scores = score_fn(torch.from_numpy(users))
    if tuple(scores.shape) != (len(users), n_items):
        raise ValueError(
            f"score_fn returned shape {tuple(scores.shape)} for {len(users)} users; expected {(len(users), n_items)}"
        )
    if check:
        _check_finite(scores, users)
    return scores if scores.is_floating_point() else scores.double()


def evaluate(
    score_fn: ScoreFn,
    train: sp.spmatrix,
    test: sp.spmatrix,
    ks: Sequence[int] = (20,),
    batch_size: int = 64,
    users: Sequence[int] | np.ndarray | None = None,
) -> dict[str, float]:
    """Full-ranking evaluation: every item not in the user's training row is ranked (chapter 01_data).

    ``score_fn(users: LongTensor (B,)) -> Tensor (B, n_items)`` must return a fresh tensor (a model's
    ``scores``): the training items are masked to -inf in it, in place. ``train`` and ``test`` are (n_users,
    n_items) CSR matrices. ``users`` defaults to every user with a non-empty test row; given users with an
    empty test row are skipped. Returns the averages of :func:`topk_metrics` (NGCF/LightGCN protocol:
    Recall@20, NDCG@20). ``batch_size`` users are scored per call: 64 keeps each (64, n_items) block in the cache
    and in memory the allocator reuses (measured on Gowalla with two cores: 1.9 s for every test user, against 3.4 s
    with 1024, whose 168 MB blocks are new memory for every batch).
    """
    ks = _check_ks(ks)
    _check_batch_size(batch_size)
    train = canonical_csr(train, "train")
    test = canonical_csr(test, "test", train.shape)
    if users is None:
        users = np.flatnonzero(np.diff(test.indptr))
    users = np.asarray(users, dtype=np.int64)
    if users.size and (users.min() < 0 or users.max() >= train.shape[0]):
        raise ValueError(f"users must lie in [0, {train.shape[0]})")
    parts = []
    with torch.no_grad():
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            scores = _scores_for(score_fn, batch, train.shape[1], check=False)
            parts.append(_per_row_metrics(scores, test[batch], train[batch], ks, users=batch))
    if not parts:
        raise ValueError("no user to evaluate: the test matrix is empty")
    return _mean_over_rows(parts)


def sample_candidates(
    train: sp.spmatrix, test: sp.spmatrix, users: np.ndarray, num_candidates: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate items for sampled leave-one-out evaluation (NCF, He et al., WWW 2017; chapter 10_hdccf).

    Returns ``(candidates, test_column)``: int64 arrays of shapes (len(users), num_candidates) and
    (len(users),). Each row of ``candidates`` holds the user's single test item, at column ``test_column``,
    and num_candidates - 1 distinct items drawn uniformly from those the user has in neither ``train`` nor
    ``test``. Reproducible for a given ``seed``.
    """
    seen = canonical_csr(train + test, "train + test")
    test = canonical_csr(test, "test")
    rng = np.random.default_rng(seed)
    n_items = seen.shape[1]
    candidates = np.empty((len(users), num_candidates), dtype=np.int64)
    candidates[:, 0] = test.indices[test.indptr[users]]
    for row, user in enumerate(users):
        seen_items = seen.indices[seen.indptr[user] : seen.indptr[user + 1]]
        n_free = n_items - len(seen_items)
        if n_free < num_candidates - 1:
            raise ValueError(
                f"user {user} has only {n_free} unseen items; num_candidates={num_candidates} needs "
                f"{num_candidates - 1}"
            )
        # The r-th unseen item is r + #{seen items s: s - (its rank among seen) <= r}.
        ranks = rng.choice(n_free, num_candidates - 1, replace=False)
        gaps = seen_items - np.arange(len(seen_items))
        candidates[row, 1:] = ranks + np.searchsorted(gaps, ranks, side="right")
    # Move the test item to a random column so that tied scores do not favour it.
    position = rng.integers(0, num_candidates, size=len(users))
    rows = np.arange(len(users))
    displaced = candidates[rows, position].copy()
    candidates[rows, position] = candidates[:, 0]
    candidates[:, 0] = displaced
    return candidates, position


def leave_one_out_metrics(
    score_fn: ScoreFn,
    train: sp.spmatrix,
    test: sp.spmatrix,
    ks: Sequence[int] = (10, 50),
    num_candidates: int | None = 100,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, float]:
    """HR@K and NDCG@K when each user has one held-out item (NCF / HDCCF; chapters 01_data, 10_hdccf).

    Rows of ``test`` hold one item (users with none are skipped; more than one is a ValueError). With
    ``num_candidates=None`` the item is ranked among all items not in the user's ``train`` row; otherwise
    among itself and ``num_candidates - 1`` items sampled uniformly from those the user never interacted with
    (:func:`sample_candidates`, seeded). ``score_fn`` is as in :func:`evaluate`. Keys ``hr@K`` and ``ndcg@K``.
    """
    ks = _check_ks(ks)
    _check_batch_size(batch_size)
    train = canonical_csr(train, "train")
    test = canonical_csr(test, "test", train.shape)
    per_user = np.diff(test.indptr)
    if np.any(per_user > 1):
        user = int(np.argmax(per_user > 1))
        raise ValueError(f"leave-one-out test rows hold one item; user {user} has {per_user[user]}")
    users = np.flatnonzero(per_user)
    keys = [f"{metric}@{k}" for k in ks for metric in ("hr", "ndcg")]
    if num_candidates is None:
        result = evaluate(score_fn, train, test, ks, batch_size, users)
        return {key: result[key] for key in keys}
    if num_candidates < 1:
        raise ValueError(f"num_candidates={num_candidates}: must be >= 1 or None")
    candidates, test_column = sample_candidates(train, test, users, num_candidates, seed)
    parts = []
    with torch.no_grad():
        for start in range(0, len(users), batch_size):
            stop = min(start + batch_size, len(users))
            scores = _scores_for(score_fn, users[start:stop], train.shape[1])
            candidate_scores = scores.gather(1, torch.from_numpy(candidates[start:stop]).to(scores.device))
            target = sp.csr_matrix(
                (np.ones(stop - start, np.float32), test_column[start:stop], np.arange(stop - start + 1)),
                shape=(stop - start, num_candidates),
            )
            parts.append(_per_row_metrics(candidate_scores, target, None, ks))
    if not parts:
        raise ValueError("no user to evaluate: the test matrix is empty")
    return _mean_over_rows(parts, keys)


def shared_histograms(first: np.ndarray, second: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two samples binned on common edges (``bins`` equal bins over their joint range), each as bin probabilities:
    ``(first_mass, second_mass, edges)``. The overlap areas of chapters 08 and 10 are sums of their minimum."""
    if bins < 1:
        raise ValueError(f"bins={bins}: must be >= 1")
    first, second = np.asarray(first, dtype=np.float64).ravel(), np.asarray(second, dtype=np.float64).ravel()
    if first.size == 0 or second.size == 0 or not (np.isfinite(first).all() and np.isfinite(second).all()):
        raise ValueError(f"need two non-empty finite samples, got sizes {first.size} and {second.size}")
    low, high = min(first.min(), second.min()), max(first.max(), second.max())
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    return np.histogram(first, edges)[0] / first.size, np.histogram(second, edges)[0] / second.size, edges


def overlap_area(first: np.ndarray, second: np.ndarray, bins: int = 100) -> float:
    """Overlap area of two samples' densities, in [0, 1]: the sum over the common bins of
    :func:`shared_histograms` of min(p_k, q_k) (the overlapping coefficient). 1 for identical samples, 0 when their
    ranges fall in disjoint bins. Chapter 08_score_distributions (positive against negative scores of each loss)
    and chapter 10_hdccf (HDCCF figure 3, 50 bins as the paper's [0, 100] axis in steps of 2)."""
    first_mass, second_mass, _ = shared_histograms(first, second, bins)
    return float(np.minimum(first_mass, second_mass).sum())
