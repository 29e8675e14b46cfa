"""HDCCF: hardness-aware debiased contrastive collaborative filtering (Yang et al., IJCAI 2022).

Chapter 10_hdccf teaches everything in this module. Three layers:

* pure loss functions on score tensors: the user-item contrastive loss, biased eq. (1) and debiased eqs.
  (14)-(16) with the pi weights of appendix C (eq. (25)); the user-user / item-item losses, eqs. (5) and (17);
* the sampling of eq. (9): a batch of M observed pairs, P positive neighbours per row, and each row's negatives
  taken from the other rows' neighbours (:func:`sample_batches`), with the counts of Propositions 1-2
  (:func:`negative_counts`) and a Monte-Carlo check of Theorem 1 (:func:`theorem1_monte_carlo`);
* the model :class:`HDCCF` (MF embeddings, optionally with the neural modulated similarity of eqs. (7)-(8)) and a
  small trainer :func:`fit_hdccf` (Adam, early stopping on validation).

Conventions: scores are similarities f; every loss divides them by the temperature tau ("omitted for brevity" in
the paper, applied everywhere here). Appendix C sets Q = |N^-|; the clamp (16) is written there as
|N^-| e^{1/tau}, which would exceed every in-range negative score, so we use Chuang et al.'s floor |N^-| e^{-1/tau}
(the bound for scores >= -1), and apply it only when omega^+ > 0, i.e. only when the correction can make the
negative score negative.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from . import losses
from .data import canonical_csr, entry_rows

REDUCTIONS = ("mean", "sum", "none")
OBJECTIVES = ("contrastive", "bpr")


# ----------------------------------------------------------------------------------------------------------------
# Pure loss functions
# ----------------------------------------------------------------------------------------------------------------


def _reduce(rows: Tensor, reduction: str) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: allowed values are {REDUCTIONS}")
    if reduction == "none":
        return rows
    return rows.mean() if reduction == "mean" else rows.sum()


def _check_rows(label: str, tensor: Tensor, rows: int) -> None:
    """``tensor`` must be (rows, N) with N >= 1, else a ValueError naming it and both shapes."""
    if tensor.dim() != 2 or tensor.shape[0] != rows or tensor.shape[1] < 1:
        raise ValueError(
            f"{label} has shape {tuple(tensor.shape)}; expected ({rows}, N >= 1) to match the "
            f"{rows} rows of the positive scores"
        )


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau={tau}: allowed range is (0, inf)")


def _check_omega(label: str, omega_plus: float) -> None:
    if not 0.0 <= omega_plus < 1.0:
        raise ValueError(f"{label}={omega_plus}: allowed range is [0, 1)")


def masked_log_mean_exp(logits: Tensor, mask: Tensor | None) -> Tensor:
    """log of the mean of e^logits over the entries where ``mask`` is True, per row: (B, N), (B, N) -> (B,).

    Rows without a True entry give -inf (an empty sum), with zero gradient and never NaN. ``mask=None`` means
    all entries. The masked mean is pi_0 of HDCCF eq. (25) (and pi^{u-u} of eq. (27)) up to the factor Q.
    """
    if mask is None:
        return torch.logsumexp(logits, dim=1) - math.log(logits.shape[1])
    if mask.shape != logits.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}; expected the logits' shape {tuple(logits.shape)}")
    count = mask.sum(dim=1)
    has_any = count > 0
    # Empty rows compute on zeros (finite, unused) so that neither value nor gradient is NaN.
    safe = torch.where(has_any[:, None], logits.masked_fill(~mask, -math.inf), torch.zeros_like(logits))
    log_mean = torch.logsumexp(safe, dim=1) - torch.log(count.clamp_min(1).to(logits.dtype))
    return torch.where(has_any, log_mean, torch.full_like(log_mean, -math.inf))


def log_negative_score(
    neg_logits: Tensor, pos_logits: Tensor, omega_plus: float, tau: float, unobserved: Tensor | None = None
) -> Tensor:
    """log of the (debiased) negative score F~ of HDCCF eqs. (15), (24)-(25) with the clamp (16), per row.

    neg_logits (B, N): f/tau of the row's N negatives (N^-, multiset); pos_logits (B, P + 1): f/tau of the row's
    trusted positives N^+ and the row's own pair; unobserved (B, N) bool: True where the negative pair is not in
    the training data (pi_0's indicator), None = all. With Q = N (appendix C) and omega^- = 1 - omega^+,

        F~ = Q / omega^- * ( mean_{unobserved j} e^{b_j} - omega^+ * mean_p e^{c_p} ),
        F~ <- max(F~, Q e^{-1/tau})   (clamp (16), applied only when omega^+ > 0).

    With omega^+ = 0 and ``unobserved=None`` this is log sum_j e^{b_j}, the negative score of eq. (2). Computed in
    the log domain; returns (B,). Chapter 10_hdccf.
    """
    _check_tau(tau)
    _check_omega("omega_plus", omega_plus)
    rows, num_negatives = neg_logits.shape
    _check_rows("pos_logits", pos_logits, rows)
    log_q = math.log(num_negatives)
    log_mean = masked_log_mean_exp(neg_logits, unobserved)
    if omega_plus == 0.0:
        return log_q + log_mean
    log_pos_mean = torch.logsumexp(pos_logits, dim=1) - math.log(pos_logits.shape[1])
    return log_q + losses.log_debiased_mean(log_mean, log_pos_mean, omega_plus, -1.0 / tau)


def user_item_loss(
    pos_scores: Tensor,
    neg_user_scores: Tensor,
    neg_item_scores: Tensor,
    pos_user_scores: Tensor,
    pos_item_scores: Tensor,
    tau: float,
    omega_plus_user: float = 0.0,
    omega_plus_item: float = 0.0,
    neg_user_unobserved: Tensor | None = None,
    neg_item_unobserved: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """User-item contrastive loss of HDCCF: eq. (1) (omega^+ = 0, no masks) or its debiased form eq. (14).

    Row b is an observed pair (u, i) with score pos_scores[b] = f(u, i):

        loss_b = -a + log(e^a + F~^u + F~^i),  a = f(u, i) / tau,

    F~^u from the negative users: neg_user_scores (B, N_u) = f(u^-, i), u^- in N_i^-; pos_user_scores (B, P) =
    f(u^+, i), u^+ in N_i^+ (the row's own user is appended, eq. (15)); neg_user_unobserved (B, N_u) bool marks
    (u^-, i) not in D. F~^i likewise from negative items f(u, i^-) and positive items f(u, i^+). See
    :func:`log_negative_score` for F~. Returns a scalar ('mean', 'sum') or (B,) ('none'). Chapter 10_hdccf.
    """
    if pos_scores.dim() != 1:
        raise ValueError(f"pos_scores has shape {tuple(pos_scores.shape)}; expected (B,)")
    rows = pos_scores.shape[0]
    for label, tensor in (
        ("neg_user_scores", neg_user_scores),
        ("neg_item_scores", neg_item_scores),
        ("pos_user_scores", pos_user_scores),
        ("pos_item_scores", pos_item_scores),
    ):
        _check_rows(label, tensor, rows)
    _check_tau(tau)
    _check_omega("omega_plus_user", omega_plus_user)
    _check_omega("omega_plus_item", omega_plus_item)
    anchor = pos_scores / tau
    log_users = log_negative_score(
        neg_user_scores / tau,
        torch.cat([pos_user_scores / tau, anchor[:, None]], 1),
        omega_plus_user,
        tau,
        neg_user_unobserved,
    )
    log_items = log_negative_score(
        neg_item_scores / tau,
        torch.cat([pos_item_scores / tau, anchor[:, None]], 1),
        omega_plus_item,
        tau,
        neg_item_unobserved,
    )
    denominator = torch.logsumexp(torch.stack([anchor, log_users, log_items], dim=1), dim=1)
    return _reduce(denominator - anchor, reduction)


def neighbour_loss(
    pos_scores: Tensor, neg_scores: Tensor, tau: float, not_neighbour: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """User-user (or item-item) contrastive loss of HDCCF: eq. (5), or eq. (17) with the weights (27).

    Row b is an anchor u (the user of an observed pair (u, i)); pos_scores (B, P) = f(u, u^+) for its P positive
    neighbours u^+ in N_i^+; neg_scores (B, N) = f(u, u^-) for u^- in N_i^-; not_neighbour (B, N) bool marks
    (u, u^-) not in D^{u-u} (no common item). With Q = N:

        loss_b = sum_p [ -c_p + log(e^{c_p} + Q * mean_{not_neighbour j} e^{b_j}) ],  c = f/tau, b = f/tau;

    ``not_neighbour=None`` gives eq. (5) (Q * mean = sum). Returns a scalar ('mean', 'sum') or (B,) ('none').
    Chapter 10_hdccf.
    """
    if pos_scores.dim() != 2:
        raise ValueError(f"pos_scores has shape {tuple(pos_scores.shape)}; expected (B, P)")
    _check_rows("neg_scores", neg_scores, pos_scores.shape[0])
    _check_tau(tau)
    positive = pos_scores / tau
    log_negative = math.log(neg_scores.shape[1]) + masked_log_mean_exp(neg_scores / tau, not_neighbour)
    rows = (torch.logaddexp(positive, log_negative[:, None]) - positive).sum(dim=1)
    return _reduce(rows, reduction)


# ----------------------------------------------------------------------------------------------------------------
# Sampling (eq. (9)) and Propositions 1-2
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class HDCCFBatch:
    """One batch in the paper's form (eq. (9)); M rows, P positive neighbours per row.

    users, items (M,): the observed pairs (u_k, i_k); user_neighbours (M, P): N_{i_k}^+, users sampled uniformly
    (with replacement) from U_{i_k}; item_neighbours (M, P): N_{u_k}^+, items from I_{u_k}. Row k's negatives are
    the other rows' neighbours, ``negative_users`` / ``negative_items`` (M, (M-1)P). Masks (None when not
    computed), all (M, (M-1)P) bool: ``user_unobserved`` (u^-, i_k) not in D, ``item_unobserved`` (u_k, i^-) not in
    D (pi_0, eq. (25)); ``user_not_neighbour`` u_k and u^- share no item, ``item_not_neighbour`` i_k and i^- share
    no user (eq. (27)).
    """

    users: Tensor
    items: Tensor
    user_neighbours: Tensor
    item_neighbours: Tensor
    user_unobserved: Tensor | None = None
    item_unobserved: Tensor | None = None
    user_not_neighbour: Tensor | None = None
    item_not_neighbour: Tensor | None = None

    def to(self, device: torch.device | str) -> HDCCFBatch:
        """The same batch with every tensor on ``device`` (sampling runs on the CPU; training may not)."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(
            self, **{name: tensor.to(device) for name, tensor in tensors.items() if tensor is not None}
        )  # the masks not computed stay None

    @property
    def negative_users(self) -> Tensor:
        """(M, (M-1)P): row k's negative users N_{i_k}^-, the other rows' user neighbours."""
        return other_rows(self.user_neighbours.unsqueeze(0).expand(len(self.users), -1, -1))

    @property
    def negative_items(self) -> Tensor:
        """(M, (M-1)P): row k's negative items N_{u_k}^-, the other rows' item neighbours."""
        return other_rows(self.item_neighbours.unsqueeze(0).expand(len(self.users), -1, -1))


def other_rows(block: Tensor) -> Tensor:
    """Split off the diagonal blocks of a (M, M, P) tensor: entry [k, m, p] belongs to row m's p-th neighbour.

    Returns (M, (M-1)P): for each row k the entries of every other row m != k, in increasing m, the multiset of
    eq. (9). The diagonal blocks lie (M+1)P apart in the flattened tensor, so dropping the first block and viewing
    the rest as (M-1) rows of (M+1)P leaves each diagonal block at the end of a row: one strided copy (a boolean
    mask costs five times as much, forward and backward, and was a third of an HDCCF step on Gowalla).
    """
    size, width = block.shape[0], block.shape[0] * block.shape[2]  # M >= 1
    rest = block.reshape(-1)[block.shape[2] :].view(size - 1, width + block.shape[2])[:, :width]
    return rest.reshape(size, width - block.shape[2])


def own_rows(block: Tensor) -> Tensor:
    """The diagonal blocks of a (M, M, P) tensor: (M, P), row k's own neighbours."""
    index = torch.arange(block.shape[0], device=block.device)
    return block[index, index]


def _sample_neighbours(matrix: sp.csr_matrix, rows: np.ndarray, count: int, generator: torch.Generator) -> Tensor:
    """``count`` column ids per row, uniformly with replacement among the row's nonzeros: (len(rows), count)."""
    starts, degrees = matrix.indptr[rows], np.diff(matrix.indptr)[rows]
    uniform = torch.rand(len(rows), count, generator=generator, dtype=torch.float64).numpy()
    offsets = np.minimum((uniform * degrees[:, None]).astype(np.int64), degrees[:, None] - 1)
    return torch.from_numpy(matrix.indices[starts[:, None] + offsets].astype(np.int64))


class _Relation:
    """Membership queries on a boolean relation between row ids and column ids of a sparse matrix.

    ``kind='entries'``: (r, c) is in the relation if it is stored in ``matrix`` (pairs in D); ``kind='shared'``: if
    rows r and c of ``matrix`` share a column (D^{u-u} / D^{i-i} of eq. (27)). The relation is kept as a dense
    boolean table when it has at most ``DENSE_LIMIT`` cells (ml-100k), else answered per query.
    """

    DENSE_LIMIT = 1 << 26

    def __init__(self, matrix: sp.csr_matrix, kind: str) -> None:
        self.matrix, self.kind = matrix, kind
        self.table = None
        width = matrix.shape[1] if kind == "entries" else matrix.shape[0]
        if matrix.shape[0] * width <= self.DENSE_LIMIT:
            self.table = (matrix if kind == "entries" else matrix @ matrix.T).toarray() > 0

    def grid(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(len(rows), len(cols)) bool: membership of every (rows[a], cols[c]).

        Without the dense table, one sparse product: the rows against the columns' own rows ('shared'), or against
        a one-hot selector of the columns ('entries'; 0.5 ms for 256 x 512 pairs of Gowalla).
        """
        if self.table is not None:
            return self.table[np.ix_(rows, cols)]
        if self.kind == "entries":
            columns = sp.csr_matrix(
                (np.ones(len(cols), dtype=np.float32), (cols, np.arange(len(cols)))),
                shape=(self.matrix.shape[1], len(cols)),
            )
        else:
            columns = self.matrix[cols].T
        return (self.matrix[rows] @ columns).toarray() > 0


def sample_batches(
    train: sp.spmatrix,
    batch_size: int,
    num_positives: int,
    generator: torch.Generator,
    observed_masks: bool = True,
    neighbour_masks: bool = True,
) -> Iterator[HDCCFBatch]:
    """One epoch of HDCCF batches (eq. (9)): the observed pairs in random order, ``batch_size`` = M at a time.

    Each row gets P = ``num_positives`` neighbours on each side (see :class:`HDCCFBatch`); a last batch with fewer
    than 2 rows is dropped (it has no negatives). ``observed_masks`` computes the pi_0 indicators of eq. (25),
    ``neighbour_masks`` those of eq. (27). All randomness comes from ``generator``. Chapter 10_hdccf.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size}: must be >= 2 (each row's negatives are the other rows')")
    if num_positives < 1:
        raise ValueError(f"num_positives={num_positives}: must be >= 1")
    matrix = canonical_csr(train, "train", dtype=np.float32, nonempty=True)
    transposed = canonical_csr(matrix.T, "train", dtype=np.float32)
    users = entry_rows(matrix)
    items = matrix.indices.astype(np.int64)
    order = torch.randperm(len(users), generator=generator).numpy()
    relations = {}
    if observed_masks:
        relations["observed"] = _Relation(matrix, "entries")
    if neighbour_masks:
        relations["users"], relations["items"] = _Relation(matrix, "shared"), _Relation(transposed, "shared")
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2:
            continue
        batch_users, batch_items = users[index], items[index]
        batch = HDCCFBatch(
            torch.from_numpy(batch_users),
            torch.from_numpy(batch_items),
            _sample_neighbours(transposed, batch_items, num_positives, generator),
            _sample_neighbours(matrix, batch_users, num_positives, generator),
        )
        size = len(index)
        flat_users = batch.user_neighbours.reshape(-1).numpy()
        flat_items = batch.item_neighbours.reshape(-1).numpy()
        if observed_masks:  # grid[k, m*P + p]: is (row k's anchor, row m's p-th neighbour) observed / neighboured?
            observed_users = relations["observed"].grid(flat_users, batch_items).T
            observed_items = relations["observed"].grid(batch_users, flat_items)
            batch.user_unobserved = ~other_rows(torch.from_numpy(observed_users).view(size, size, -1))
            batch.item_unobserved = ~other_rows(torch.from_numpy(observed_items).view(size, size, -1))
        if neighbour_masks:
            share_users = relations["users"].grid(batch_users, flat_users)
            share_items = relations["items"].grid(batch_items, flat_items)
            batch.user_not_neighbour = ~other_rows(torch.from_numpy(share_users).view(size, size, -1))
            batch.item_not_neighbour = ~other_rows(torch.from_numpy(share_items).view(size, size, -1))
        yield batch


def proposition_slope(batch_size: int, num_positives: int, num_interactions: int) -> float:
    """P (M - 1) / (|D| - 1), the slope of Propositions 1-2 (HDCCF eqs. (10)-(11)).

    M is the batch size (observed pairs per batch), P the number of positive neighbours per row and |D| the number
    of observed pairs the batches are drawn from. E[n_{i'}] = slope * |U_{i'}| and E[n_{u'}] = slope * |I_{u'}|.
    """
    return num_positives * (batch_size - 1) / (num_interactions - 1)


def negative_counts(
    train: sp.spmatrix, batch_size: int, num_positives: int, num_batches: int, generator: torch.Generator
) -> dict[str, np.ndarray | float]:
    """Average number of times each item (user) appears among a row's in-batch negatives (Propositions 1-2).

    Draws ``num_batches`` full batches of :func:`sample_batches` (restarting epochs as needed), counts every id in
    each row's ``negative_items`` / ``negative_users`` (the multisets N_u^- and N_i^- that both the user-item loss
    and the user-user / item-item losses use) and divides by the number of rows. Returns ``item_counts``
    (n_items,), ``user_counts`` (n_users,), ``item_degree`` |U_i| and ``user_degree`` |I_u| (of ``train``), and
    the predicted ``slope`` of :func:`proposition_slope`. Chapter 10_hdccf.
    """
    matrix = canonical_csr(train, "train", dtype=np.float32, nonempty=True)
    item_counts = np.zeros(matrix.shape[1])
    user_counts = np.zeros(matrix.shape[0])
    rows = drawn = 0
    while drawn < num_batches:
        for batch in sample_batches(matrix, batch_size, num_positives, generator, False, False):
            if len(batch.users) < batch_size:
                continue
            item_counts += np.bincount(batch.negative_items.reshape(-1).numpy(), minlength=matrix.shape[1])
            user_counts += np.bincount(batch.negative_users.reshape(-1).numpy(), minlength=matrix.shape[0])
            rows += len(batch.users)
            drawn += 1
            if drawn == num_batches:
                break
    return {
        "item_counts": item_counts / rows,
        "user_counts": user_counts / rows,
        "item_degree": np.diff(matrix.T.tocsr().indptr).astype(np.float64),
        "user_degree": np.diff(matrix.indptr).astype(np.float64),
        "slope": proposition_slope(batch_size, num_positives, matrix.nnz),
    }


# ----------------------------------------------------------------------------------------------------------------
# Theorem 1
# ----------------------------------------------------------------------------------------------------------------


def theorem1_monte_carlo(
    true_negative_scores: np.ndarray,
    false_negative_scores: np.ndarray,
    observed_scores: np.ndarray,
    num_negatives: int,
    num_positives: int,
    tau: float,
    trials: int,
    seed: int = 0,
) -> dict[str, float]:
    """Monte-Carlo check of HDCCF Theorem 1 on the user side of an observed pair (u, i), in float64.

    Candidate negative users of item i form three populations, given by their scores f(u^-, i):
    ``observed_scores`` (pairs in D: false negatives of the first kind), ``false_negative_scores`` (unobserved
    but positive: the second kind) and ``true_negative_scores``. omega^+ is the false negatives' share of the
    unobserved users. Each trial draws ``num_negatives`` users uniformly from all three populations (the in-batch
    multiset N_i^-, with replacement) and ``num_positives`` + 1 positives (N_i^+ and the row's own user u) from the
    false-negative population, appendix C's assumption that observed positives follow p_i^+. It evaluates F~
    (eq. (24) via :func:`log_negative_score`) and the plain sum of eq. (2), and the losses -log(e^a / (e^a + F))
    with a = f(u, i) / tau and the user-side term only.

    Returns the ideal Q E_{p^-}[e^{f/tau}] (``f_ideal``, Q = num_negatives) and the mean ideal loss (eq. (21),
    user side), the Monte-Carlo means and standard errors of F~ and of the plain sum (``f_debiased_*``,
    ``f_biased_*``), the mean debiased and biased losses, omega^+ and the fraction of trials where the clamp (16)
    was active (``clamped``; the theorem is about the unclamped estimator). Chapter 10_hdccf.
    """
    populations = [
        np.asarray(scores, dtype=np.float64)
        for scores in (observed_scores, false_negative_scores, true_negative_scores)
    ]
    if min(len(populations[1]), len(populations[2])) == 0:
        raise ValueError("true_negative_scores and false_negative_scores must be non-empty")
    _check_tau(tau)
    rng = np.random.default_rng(seed)
    pool = np.concatenate(populations)
    unobserved_pool = np.arange(len(pool)) >= len(populations[0])
    omega_plus = len(populations[1]) / (len(populations[1]) + len(populations[2]))
    draws = rng.integers(0, len(pool), size=(trials, num_negatives))
    positives = populations[1][rng.integers(0, len(populations[1]), size=(trials, num_positives + 1))]
    anchor = positives[:, -1] / tau  # the row's own pair (u, i)
    log_f = log_negative_score(
        torch.from_numpy(pool[draws] / tau),
        torch.from_numpy(positives / tau),
        omega_plus,
        tau,
        torch.from_numpy(unobserved_pool[draws]),
    )
    f_debiased = log_f.exp().numpy()
    f_biased = np.exp(pool[draws] / tau).sum(axis=1)
    f_ideal = num_negatives * float(np.mean(np.exp(populations[2] / tau)))

    def loss(negative_score: np.ndarray | float) -> float:
        return float(np.mean(np.logaddexp(anchor, np.log(negative_score)) - anchor))

    return {
        "omega_plus": omega_plus,
        "f_ideal": f_ideal,
        "loss_ideal": loss(f_ideal),
        "f_debiased_mean": float(f_debiased.mean()),
        "f_debiased_stderr": float(f_debiased.std() / math.sqrt(trials)),
        "f_biased_mean": float(f_biased.mean()),
        "f_biased_stderr": float(f_biased.std() / math.sqrt(trials)),
        "loss_debiased_mean": loss(f_debiased),
        "loss_biased_mean": loss(f_biased),
        "clamped": float(np.mean(np.isclose(log_f.numpy(), math.log(num_negatives) - 1.0 / tau, rtol=0, atol=1e-12))),
    }


# ----------------------------------------------------------------------------------------------------------------
# Model and trainer
# ----------------------------------------------------------------------------------------------------------------


class HDCCF(torch.nn.Module):
    """HDCCF (Yang et al., IJCAI 2022): MF embeddings p_u, q_i trained with the loss of eq. (6) on batches of eq. (9).

    f(u, i) = (m_ui * p_u) . (m_ui * q_i) with m_ui = sigmoid(g(e_i || e_u || e_i * e_u)) (eqs. (7)-(8)) when
    ``modulation``, else the plain dot product p_u . q_i (the paper's all-ones modulating vector). The paper leaves
    g open; here it is one linear layer R^{3d} -> R^d. User-user and item-item similarities are p_u . p_u' and
    q_i . q_i'. Loss per batch: mean over rows of L_{u-i} + lambda_user L_{u-u} + lambda_item L_{i-i}
    (eqs. (14), (17)); ``observed_masks`` / ``neighbour_masks`` switch the pi_0 / pi^{u-u} indicators (eqs. (25),
    (27)) on; ``objective='bpr'`` replaces L_{u-i} by BPR over the same in-batch negatives (the BPR+ ablation).
    Chapter 10_hdccf.

    Args:
        n_users, n_items: matrix size. dim: embedding size d. tau: temperature (> 0).
        num_positives: P, positive neighbours per row and side. omega_plus_user, omega_plus_item: omega^+ in [0, 1).
        lambda_user, lambda_item: weights of the auxiliary losses (>= 0). modulation: eqs. (7)-(8) or plain dot.
        init_std: normal initialisation scale. seed: initialisation seed.
    """

    name = "hdccf"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        tau: float = 0.2,
        num_positives: int = 4,
        omega_plus_user: float = 0.05,
        omega_plus_item: float = 0.05,
        lambda_user: float = 0.1,
        lambda_item: float = 0.1,
        modulation: bool = True,
        observed_masks: bool = True,
        neighbour_masks: bool = True,
        objective: str = "contrastive",
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for label, value in (
            ("n_users", n_users),
            ("n_items", n_items),
            ("dim", dim),
            ("num_positives", num_positives),
        ):
            if value < 1:
                raise ValueError(f"{label}={value}: must be >= 1")
        _check_tau(tau)
        _check_omega("omega_plus_user", omega_plus_user)
        _check_omega("omega_plus_item", omega_plus_item)
        for label, weight in (("lambda_user", lambda_user), ("lambda_item", lambda_item)):
            if not weight >= 0:
                raise ValueError(f"{label}={weight}: allowed range is [0, inf)")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}: allowed values are {OBJECTIVES}")
        if not init_std > 0:
            raise ValueError(f"init_std={init_std}: must be > 0")
        self.n_users, self.n_items, self.dim, self.tau = n_users, n_items, dim, tau
        self.num_positives, self.omega_plus_user, self.omega_plus_item = num_positives, omega_plus_user, omega_plus_item
        self.lambda_user, self.lambda_item, self.modulation = lambda_user, lambda_item, modulation
        self.observed_masks, self.neighbour_masks, self.objective = observed_masks, neighbour_masks, objective
        generator = torch.Generator().manual_seed(seed)

        def table(rows: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(rows, dim, generator=generator) * init_std)

        self.user_embedding, self.item_embedding = table(n_users), table(n_items)
        if modulation:
            self.user_factor, self.item_factor = table(n_users), table(n_items)
            self.modulator = torch.nn.Linear(3 * dim, dim)
            with torch.no_grad():
                bound = 1.0 / math.sqrt(3 * dim)
                self.modulator.weight.copy_(torch.rand(dim, 3 * dim, generator=generator) * 2 * bound - bound)
                self.modulator.bias.zero_()

    def all_pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """f(u, i) for every user of ``users`` (A,) and item of ``items`` (C,): (A, C), differentiable (eq. (7))."""
        p, q = _rows(self.user_embedding, users), _rows(self.item_embedding, items)
        if not self.modulation:
            return p @ q.T
        e_u, e_i = _rows(self.user_factor, users), _rows(self.item_factor, items)
        # g(e_i || e_u || e_i * e_u) = W_i e_i + W_u e_u + W_h (e_i * e_u) + b: the first two per entity, once.
        w_i, w_u, w_h = self.modulator.weight.split(self.dim, dim=1)
        pre = (e_i @ w_i.T + self.modulator.bias)[None] + (e_u @ w_u.T)[:, None]
        pre = pre + (e_u[:, None, :] * e_i[None, :, :]) @ w_h.T
        modulating = torch.sigmoid(pre)
        return (modulating.square() * (p[:, None, :] * q[None, :, :])).sum(-1)

    @torch.no_grad()
    def scores(self, users: Tensor) -> Tensor:
        """Scores of every item for ``users`` (U,) -> (U, n_items), float32, no grad: the evaluation contract."""
        items = torch.arange(self.n_items, device=self.user_embedding.device)
        chunk = max(1, (1 << 18) // self.n_items) if self.modulation else len(users)
        return torch.cat(
            [self.all_pair_scores(users[start : start + chunk], items) for start in range(0, len(users), chunk)]
        ).float()

    def make_batches(self, train: sp.spmatrix, batch_size: int, generator: torch.Generator) -> Iterator[HDCCFBatch]:
        """One epoch of batches in the paper's form for this model (P, and only the masks it uses)."""
        observed = self.observed_masks and self.objective == "contrastive"
        neighbour = self.neighbour_masks and (self.lambda_user > 0 or self.lambda_item > 0)
        return sample_batches(train, batch_size, self.num_positives, generator, observed, neighbour)

    def batch_loss(self, batch: HDCCFBatch) -> Tensor:
        """The loss of eq. (6) for one batch, averaged over its rows: scalar tensor with grad."""
        size = len(batch.users)
        flat_users, flat_items = batch.user_neighbours.reshape(-1), batch.item_neighbours.reshape(-1)
        user_item = self.all_pair_scores(batch.users, flat_items).view(size, size, -1)  # f(u_k, i'), i' of row m
        item_user = self.all_pair_scores(flat_users, batch.items).T.reshape(size, size, -1)  # f(u', i_k)
        pos = self.diagonal_scores(batch.users, batch.items)
        if self.objective == "bpr":
            bpr = losses.make("bpr", tau=self.tau)
            total = bpr(pos, torch.cat([other_rows(item_user), other_rows(user_item)], dim=1)) / (
                2 * (size - 1) * self.num_positives
            )
        else:
            total = user_item_loss(
                pos,
                other_rows(item_user),
                other_rows(user_item),
                own_rows(item_user),
                own_rows(user_item),
                self.tau,
                self.omega_plus_user,
                self.omega_plus_item,
                batch.user_unobserved if self.observed_masks else None,
                batch.item_unobserved if self.observed_masks else None,
            )
        if self.lambda_user > 0:
            anchors = _rows(self.user_embedding, batch.users)
            user_user = (anchors @ _rows(self.user_embedding, flat_users).T).view(size, size, -1)
            total = total + self.lambda_user * neighbour_loss(
                own_rows(user_user),
                other_rows(user_user),
                self.tau,
                batch.user_not_neighbour if self.neighbour_masks else None,
            )
        if self.lambda_item > 0:
            anchors = _rows(self.item_embedding, batch.items)
            item_item = (anchors @ _rows(self.item_embedding, flat_items).T).view(size, size, -1)
            total = total + self.lambda_item * neighbour_loss(
                own_rows(item_item),
                other_rows(item_item),
                self.tau,
                batch.item_not_neighbour if self.neighbour_masks else None,
            )
        return total

    def diagonal_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """f(users[k], items[k]) for each k: (B,), differentiable, without the (B, B) matrix of all_pair_scores."""
        p, q = _rows(self.user_embedding, users), _rows(self.item_embedding, items)
        if not self.modulation:
            return (p * q).sum(-1)
        e_u, e_i = _rows(self.user_factor, users), _rows(self.item_factor, items)
        modulating = torch.sigmoid(self.modulator(torch.cat([e_i, e_u, e_i * e_u], dim=1)))
        return (modulating.square() * p * q).sum(-1)


def _rows(table: torch.nn.Parameter, ids: Tensor) -> Tensor:
    """Rows ``ids`` of an embedding table whose gradient is sparse (only those rows): the tables step with
    torch.optim.SparseAdam, so a step costs the batch's rows, not the whole table."""
    return torch.nn.functional.embedding(ids, table, sparse=True)
