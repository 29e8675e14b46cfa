"""Shared fixtures: the real data sets from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os

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
