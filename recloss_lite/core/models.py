"""Matrix factorisation, the backbone every loss in the book trains (chapters 07_training and later).

All models in recloss-lite share one scoring contract: ``scores(users) -> (U, n_items)`` float32 without grad, so
evaluation, plots and the CLI treat MF, iALS, EASE and HDCCF alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels

SIMILARITIES = ("dot", "cosine")


class MF(torch.nn.Module):
    """Matrix factorisation: score(u, i) = <p_u, q_i> (``dot``) or cos(p_u, q_i) (``cosine``, SimpleX's choice).

    User and item embeddings live in one table ``weight`` of shape (n_users + n_items, dim), users first, so the
    trainer gathers every row a batch touches with one index and updates only those rows (lazy Adam): this is what
    makes an epoch on Gowalla take about a second on two cores. Taught in chapter 07_training.

    Args:
        n_users, n_items: matrix size.
        dim: embedding size (64 in every published comparison the book uses).
        similarity: ``"dot"`` or ``"cosine"``.
        init_std: standard deviation of the normal initialisation.
        seed: seed of the initialisation.
    """

    name = "mf"

    def __init__(
        self, n_users: int, n_items: int, dim: int = 64, similarity: str = "dot", init_std: float = 0.1, seed: int = 0
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity={similarity!r}: allowed values are {SIMILARITIES}")
        for label, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            if value < 1:
                raise ValueError(f"{label}={value}: must be >= 1")
        if not init_std > 0:
            raise ValueError(f"init_std={init_std}: must be > 0")
        self.n_users, self.n_items, self.dim, self.similarity = n_users, n_items, dim, similarity
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(n_users + n_items, dim, generator=generator) * init_std)

    def row_ids(self, users: torch.Tensor, *item_ids: torch.Tensor) -> torch.Tensor:
        """Flat row ids of ``weight`` for users then each item tensor (flattened), in that order."""
        return torch.cat([users.reshape(-1)] + [ids.reshape(-1) + self.n_users for ids in item_ids])

    def normalize(self, vectors: torch.Tensor) -> torch.Tensor:
        """The vectors the similarity sees: unit length for cosine, unchanged for dot."""
        return F.normalize(vectors, dim=-1) if self.similarity == "cosine" else vectors

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """Similarity-ready user vectors (U, dim), differentiable."""
        return self.normalize(self.weight.index_select(0, users))

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Similarity-ready item vectors (..., dim), differentiable."""
        return self.normalize(self.weight.index_select(0, items.reshape(-1) + self.n_users)).view(*items.shape, -1)

    @torch.no_grad()
    def row_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Row-wise scores: user ``users[b]`` against its own row ``items[b]``, (B,) and (B, K) -> (B, K), without grad
        (the ``dns`` sampler's scorer). :meth:`scores` is every item for each user."""
        if self.similarity == "dot":  # the kernel also scores a positive per row: items[:, 0] stands in for it
            fast = kernels.batch_scores(self.weight.data, users, items[:, 0] + self.n_users, items + self.n_users)
            if fast is not None:
                return fast[1]
        return (self.item_vectors(items) * self.user_vectors(users).unsqueeze(1)).sum(-1)

    @torch.no_grad()
    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for ``users`` (U,) -> (U, n_items): the evaluation contract."""
        items = self.normalize(self.weight[self.n_users :])
        return self.user_vectors(users) @ items.T


def batch_scores(
    users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None, shared: bool, in_batch: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative scores of a batch from similarity-ready vectors.

    users (B, d), positives (B, d); negatives (B, N, d) per row, (N, d) shared, or ignored when ``in_batch`` (each
    row's negatives are the other rows' positives). Returns pos (B,), neg (B, N) (N = B - 1 in batch).
    """
    if in_batch:
        all_scores = users @ positives.T
        batch = all_scores.shape[0]
        off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=all_scores.device)
        return all_scores.diagonal(), all_scores[off_diagonal].view(batch, batch - 1)
    if negatives is None:
        raise ValueError("batch_scores: negatives are needed unless in_batch")
    pos = (users * positives).sum(-1)
    if shared:
        return pos, users @ negatives.T
    if negatives.shape[1] <= 16:  # a few negatives per row: bmm's per-matrix overhead dominates
        return pos, (negatives * users.unsqueeze(1)).sum(-1)
    return pos, torch.bmm(negatives, users.unsqueeze(2)).squeeze(2)
