"""Shared fixtures: the real data sets from ../shared/data (skipped with a reason when absent) and a small generated
one that is always there."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from recloss_lite.core import data

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _load_or_skip(name: str) -> data.Dataset:
    try:
        return data.load(name, fetch=False)
    except data.DatasetNotFoundError as error:
        pytest.skip(f"{name} is not available here: {error}")


@pytest.fixture(scope="session")
def ml100k() -> data.Dataset:
    return _load_or_skip("ml-100k")


@pytest.fixture(scope="session")
def gowalla() -> data.Dataset:
    return _load_or_skip("gowalla")


def toy_dataset(n_users: int = 120, n_items: int = 80, seed: int = 0) -> data.Dataset:
    """A small generated data set with structure to learn: users and items fall into 4 groups, and each user
    interacts mostly with items of its own group (12-20 items, 80% in-group); a random fifth of each user's items
    is the test set. Real training reaches well above random on it within a few epochs, in a fraction of a second."""
    rng = np.random.default_rng(seed)
    user_group, item_group = rng.integers(0, 4, n_users), rng.integers(0, 4, n_items)
    rows, cols, is_test = [], [], []
    for user in range(n_users):
        own, other = np.flatnonzero(item_group == user_group[user]), np.flatnonzero(item_group != user_group[user])
        count = int(rng.integers(12, 21))
        inside = rng.choice(own, size=min(len(own), int(0.8 * count)), replace=False)
        outside = rng.choice(other, size=count - len(inside), replace=False)
        items = np.concatenate([inside, outside])
        test = rng.random(len(items)) < 0.2
        test[0], test[1] = True, False  # every user has a test item and a training item
        rows += [user] * len(items)
        cols += items.tolist()
        is_test += test.tolist()
    rows, cols, is_test = np.array(rows), np.array(cols), np.array(is_test)
    shape = (n_users, n_items)
    return data.Dataset("toy", data.interaction_matrix(rows[~is_test], cols[~is_test], shape),
                        data.interaction_matrix(rows[is_test], cols[is_test], shape), n_users, n_items)


@pytest.fixture(scope="session")
def toy() -> data.Dataset:
    """:func:`toy_dataset`: generated, so the tests that use it never skip."""
    return toy_dataset()
