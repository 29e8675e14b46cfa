"""Negative samplers for training with sampled losses (chapter 07_training; chapter 05_debiasing on why uniform
samples contain false negatives).

A sampler turns a batch of observed (user, item) pairs into negative item ids, either per row ``(B, N)`` or shared
by the whole batch ``(N,)`` (one matrix product scores them all: the fast path for hundreds of negatives), together
with the log sampling probabilities the sampled-softmax log-Q correction needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .data import entry_rows

KINDS = ("uniform", "uniform-exclude", "popularity", "in-batch", "dns")


@dataclass
class Negatives:
    """Sampled negatives of one batch.

    ``items``: (B, N) per-row ids or (N,) shared ids; ``shared``: whether ``items`` is shared by the batch. For
    ``in-batch`` the negatives of row b are the other rows' positives (N = B - 1 per row, expressed as shared ids
    whose diagonal the trainer removes). ``log_q`` (same shape as ``items``) and ``log_q_pos`` (B,), the log
    sampling probabilities of the negatives and of the batch's positives that the sampled softmax needs, are
    looked up only when asked for.
    """

    items: torch.Tensor
    pos_items: torch.Tensor
    log_probabilities: torch.Tensor
    shared: bool
    in_batch: bool = False

    @property
    def log_q(self) -> torch.Tensor:
        return self.log_probabilities[self.items]

    @property
    def log_q_pos(self) -> torch.Tensor:
        return self.log_probabilities[self.pos_items]


class NegativeSampler:
    """Draws negatives for batches of (user, positive item) pairs.

    Args:
        train: (n_users, n_items) CSR matrix of training interactions.
        kind: ``uniform`` over all items (positives may be drawn, the SimpleX/BARS setting); ``uniform-exclude``
            over the items the user has not interacted with (rejection sampling, per row only); ``popularity``
            proportional to count**alpha; ``in-batch``: the other rows' positives (popularity-distributed);
            ``dns``: dynamic negative sampling (Zhang et al., SIGIR 2013): each negative is the highest-scored of
            ``candidates`` uniform draws under the model being trained (chapter 04_hardness: the hard negatives are
            the ones with gradient), per row only.
        num_negatives: N, negatives per positive (ignored for ``in-batch``).
        shared: one set of N negatives for the whole batch instead of N per row.
        alpha: popularity exponent (0 = uniform, 1 = proportional to popularity; word2vec uses 0.75).
        candidates: uniform draws per negative that ``dns`` picks the hardest from (1 = plain uniform).
        device: where the draws are made and returned (with a generator on the same device): on a GPU the whole
            sampling stays there.
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        kind: str = "uniform",
        num_negatives: int = 1,
        shared: bool = False,
        alpha: float = 0.75,
        candidates: int = 4,
        device: torch.device | str = "cpu",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"sampler={kind!r}: allowed values are {KINDS}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives={num_negatives}: must be >= 1")
        if kind in ("uniform-exclude", "dns") and shared:
            raise ValueError(
                f"sampler={kind!r} picks each row's negatives for its own user, so it needs per-row "
                "negatives: use shared=False (or sampler='uniform' with shared negatives)"
            )
        if candidates < 1:
            raise ValueError(f"candidates={candidates}: must be >= 1")
        if not 0.0 <= alpha <= 2.0:
            raise ValueError(f"alpha={alpha}: allowed range is [0, 2]")
        self.kind, self.num_negatives, self.shared, self.alpha = kind, num_negatives, shared, alpha
        self.candidates, self.device = candidates, torch.device(device)
        self.n_users, self.n_items = train.shape
        counts = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()
        if kind in ("popularity", "in-batch"):
            weights = counts ** (alpha if kind == "popularity" else 1.0)
            if weights.sum() <= 0:
                raise ValueError("popularity sampling needs at least one training interaction")
        else:
            weights = np.ones(self.n_items)
        probabilities = weights / weights.sum()
        with np.errstate(divide="ignore"):
            self.log_probabilities = torch.from_numpy(np.log(probabilities)).float().to(self.device)
        self.cdf = torch.from_numpy(np.cumsum(probabilities)).double().to(self.device)
        if kind == "uniform-exclude":
            train = train.tocsr()
            rows = entry_rows(train)
            self.interaction_keys = torch.from_numpy(np.sort(rows * self.n_items + train.indices)).to(self.device)
            self.items_per_user = torch.from_numpy(np.diff(train.indptr)).to(self.device)

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        if self.kind == "popularity":
            uniforms = torch.rand(shape, generator=generator, dtype=torch.float64, device=self.device)
            return torch.searchsorted(self.cdf, uniforms).clamp_(max=self.n_items - 1)
        return torch.randint(0, self.n_items, shape, generator=generator, device=self.device)

    def _interacted(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.unsqueeze(1) * self.n_items + items
        position = torch.searchsorted(self.interaction_keys, keys).clamp_(max=len(self.interaction_keys) - 1)
        return self.interaction_keys[position] == keys

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        generator: torch.Generator,
        scorer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> Negatives:
        """Negatives for a batch: users (B,), pos_items (B,) -> :class:`Negatives`. ``dns`` needs ``scorer(users
        (B,), items (B, K)) -> (B, K)``, the current model's scores (e.g. :meth:`~.models.MF.row_scores`).
        """
        if self.kind == "in-batch":
            return Negatives(pos_items, pos_items, self.log_probabilities, shared=True, in_batch=True)
        if self.kind == "dns":
            if scorer is None:
                raise ValueError("sampler='dns' picks the highest-scored candidates: pass scorer=model.row_scores")
            batch, n_neg, n_cand = len(users), self.num_negatives, self.candidates
            candidates = self._draw((batch, n_neg * n_cand), generator)
            hardest = scorer(users, candidates).view(batch, n_neg, n_cand).argmax(-1, keepdim=True)
            items = candidates.view(batch, n_neg, n_cand).gather(2, hardest).squeeze(2)
            return Negatives(items, pos_items, self.log_probabilities, shared=False)
        shape = (self.num_negatives,) if self.shared else (len(users), self.num_negatives)
        items = self._draw(shape, generator)
        if self.kind == "uniform-exclude":
            # Rejection sampling; a user who has interacted with every item keeps uniform draws.
            allowed = self.items_per_user[users] < self.n_items
            for _ in range(100):
                redraw = self._interacted(users, items) & allowed.unsqueeze(1)
                if not redraw.any():
                    break
                items[redraw] = self._draw((int(redraw.sum()),), generator)
        return Negatives(items, pos_items, self.log_probabilities, shared=self.shared)
