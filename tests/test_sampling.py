"""Negative samplers: shapes, exclusion, and the popularity distribution against its target frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recloss_lite.core.sampling import NegativeSampler


def _matrix(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    return sp.csr_matrix((np.ones(len(items), np.float32), (users, items)), shape=(len(rows), n_items))


TRAIN = _matrix([[0, 1, 2], [2, 3], [0], [1, 2, 3, 4, 5, 6, 7, 8]], n_items=10)


def test_shapes_per_row_and_shared() -> None:
    users, items = torch.tensor([0, 1, 3]), torch.tensor([0, 2, 4])
    generator = torch.Generator().manual_seed(0)
    per_row = NegativeSampler(TRAIN, "uniform", num_negatives=5).sample(users, items, generator)
    shared = NegativeSampler(TRAIN, "uniform", num_negatives=7, shared=True).sample(users, items, generator)
    assert per_row.items.shape == (3, 5) and not per_row.shared
    assert shared.items.shape == (7,) and shared.shared
    assert per_row.log_q.shape == per_row.items.shape and per_row.log_q_pos.shape == (3,)
    # Uniform: every item has probability 1/10.
    assert torch.allclose(per_row.log_q, torch.full((3, 5), float(np.log(0.1))))


def test_uniform_exclude_never_returns_an_interacted_item() -> None:
    sampler = NegativeSampler(TRAIN, "uniform-exclude", num_negatives=50)
    users = torch.tensor([0, 1, 2, 3] * 10)
    negatives = sampler.sample(users, torch.zeros(40, dtype=torch.long), torch.Generator().manual_seed(1))
    dense = torch.from_numpy(TRAIN.toarray()).bool()
    assert not dense[users.unsqueeze(1), negatives.items].any()
    # User 3 has 8 of 10 items: only items 0 and 9 remain, and both are drawn.
    assert set(negatives.items[users == 3].unique().tolist()) == {0, 9}


def test_popularity_frequencies_match_count_to_the_alpha() -> None:
    alpha = 0.75
    counts = np.asarray(TRAIN.sum(axis=0)).ravel()
    expected = counts**alpha / (counts**alpha).sum()
    sampler = NegativeSampler(TRAIN, "popularity", num_negatives=200_000, shared=True, alpha=alpha)
    drawn = sampler.sample(torch.tensor([0]), torch.tensor([0]), torch.Generator().manual_seed(2)).items
    frequencies = np.bincount(drawn.numpy(), minlength=10) / len(drawn)
    # Binomial standard error of each frequency; 5 standard errors is a tolerance a correct sampler never misses.
    tolerance = 5 * np.sqrt(expected * (1 - expected) / len(drawn)) + 1e-12
    assert np.all(np.abs(frequencies - expected) <= tolerance)
    assert frequencies[9] == 0.0  # item 9 has no interaction, so popularity never draws it


def test_in_batch_uses_the_batch_positives() -> None:
    sampler = NegativeSampler(TRAIN, "in-batch")
    items = torch.tensor([1, 2, 3])
    negatives = sampler.sample(torch.tensor([0, 1, 3]), items, torch.Generator())
    assert negatives.in_batch and torch.equal(negatives.items, items)


def test_same_generator_seed_same_draws() -> None:
    sampler = NegativeSampler(TRAIN, "popularity", num_negatives=4)
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    first = sampler.sample(users, items, torch.Generator().manual_seed(5)).items
    second = sampler.sample(users, items, torch.Generator().manual_seed(5)).items
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "nearest"}, "sampler='nearest'"),
        ({"num_negatives": 0}, "num_negatives=0"),
        ({"kind": "uniform-exclude", "shared": True}, "per-row"),
        ({"kind": "popularity", "alpha": 3.0}, "alpha=3.0"),
        ({"kind": "dns", "shared": True}, "sampler='dns' picks each row's negatives"),
        ({"kind": "dns", "candidates": 0}, "candidates=0"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        NegativeSampler(TRAIN, **kwargs)


def test_dns_keeps_the_highest_scored_of_its_candidates() -> None:
    # A scorer that prefers high item ids: every kept negative is the largest of its group of draws.
    sampler = NegativeSampler(TRAIN, "dns", num_negatives=3, candidates=5)
    users, items = torch.tensor([0, 1, 3, 2]), torch.tensor([0, 2, 4, 0])
    seen = {}

    def scorer(batch_users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        assert torch.equal(batch_users, users) and candidates.shape == (4, 15)
        seen["candidates"] = candidates
        return candidates.float()

    negatives = sampler.sample(users, items, torch.Generator().manual_seed(0), scorer=scorer)
    expected = seen["candidates"].view(4, 3, 5).max(-1).values
    assert negatives.items.shape == (4, 3) and torch.equal(negatives.items, expected)
    with pytest.raises(ValueError, match="pass scorer=model.row_scores"):
        sampler.sample(users, items, torch.Generator())


def test_dns_draws_harder_negatives_than_uniform(ml100k) -> None:
    # The best of 8 uniform draws lies above the median uniform score with probability 1 - 0.5**8 = 0.996.
    from recloss_lite.core.training import TrainConfig, fit

    _, model = fit(TrainConfig(dataset="ml-100k", loss="bpr", epochs=2, batch_size=1024), ml100k, progress=False)
    users = torch.arange(200)
    items = torch.zeros(200, dtype=torch.int64)
    generator = torch.Generator().manual_seed(1)
    hard = (
        NegativeSampler(ml100k.train, "dns", num_negatives=8, candidates=8)
        .sample(users, items, generator, scorer=model.row_scores)
        .items
    )
    easy = NegativeSampler(ml100k.train, "uniform", num_negatives=8).sample(users, items, generator).items
    above = model.row_scores(users, hard) > model.row_scores(users, easy).median()
    assert above.float().mean() > 0.97
