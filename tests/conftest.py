"""Shared fixtures: the real data sets from ../shared/data (skipped with a reason when absent) and a small generated
one that is always there."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

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
    return data.Dataset(
        "toy",
        data.interaction_matrix(rows[~is_test], cols[~is_test], shape),
        data.interaction_matrix(rows[is_test], cols[is_test], shape),
        n_users,
        n_items,
    )


@pytest.fixture(scope="session")
def toy() -> data.Dataset:
    """:func:`toy_dataset`: generated, so the tests that use it never skip."""
    return toy_dataset()


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@contextlib.contextmanager
def headless_chromium(window_size: str = "1280,1600"):
    """A selenium driver for Debian's headless Chromium in a fresh profile, quit and removed afterwards; the test is
    skipped (with the install command) where Chromium or its driver is missing."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium / chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="recloss-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={window_size}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium():
    """:func:`headless_chromium` for one test (window 1400 x 1000)."""
    with headless_chromium("1400,1000") as driver:
        yield driver
