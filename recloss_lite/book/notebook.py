"""Small helpers the book's chapters share: fast mode, figure paths and recorded headline numbers.

Every chapter's ``parameters`` cell calls :func:`fast_mode`; its last cell calls :func:`record`, whose JSON the
notebook tests read back (the MS Recommenders habit, without papermill).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import matplotlib.figure

from ..core.training import REPO_ROOT

FIGURES = REPO_ROOT / "figures"
FAST_ENV = "RECLOSS_FAST"
RECORDS_ENV = "RECLOSS_RECORDS"


def fast_mode() -> bool:
    """True when the environment variable ``RECLOSS_FAST`` is ``1`` or ``true`` (any case): CI's small but real
    settings; ``0``, ``false``, empty or unset mean the full settings."""
    value = os.environ.get(FAST_ENV, "0").strip().lower()
    if value not in {"0", "1", "true", "false", ""}:
        raise ValueError(f"{FAST_ENV}={value!r}: allowed values are 1 / true (fast) or 0 / false / empty (full)")
    return value in {"1", "true"}


def figures_dir() -> Path:
    """Where chapters save figures: ``figures/`` (committed, full settings), or in fast mode the build folder
    next to the records, so that a fast build (CI) never overwrites the committed figures."""
    return records_dir().parent / "figures-fast" if fast_mode() else FIGURES


def save_figure(fig: matplotlib.figure.Figure, name: str) -> Path:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` (deterministic: no timestamps in the PNG metadata)."""
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    return path


def records_dir() -> Path:
    """Folder where chapters record their headline numbers (``$RECLOSS_RECORDS``, default ``book/_build/records``)."""
    return Path(os.environ.get(RECORDS_ENV, REPO_ROOT / "book" / "_build" / "records"))


def record(chapter: str, **values: float | int | str | bool) -> dict:
    """Write a chapter's headline numbers to ``<records_dir>/<chapter>.json`` and return them.

    The notebook tests read this file back and assert the values with tolerances. Numbers (numpy and torch scalars
    included) must be finite, and ints stay ints; anything else raises ValueError naming the value, before the file
    is touched.
    """
    values = {key: _recordable(chapter, key, value) for key, value in values.items()}
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)
    return values


def _recordable(chapter: str, key: str, value: object) -> float | int | str | bool:
    """``value`` as a plain JSON value: a str or bool as it is, a number (Python, numpy or a torch scalar) as an int
    or a finite float; ValueError naming the chapter and key otherwise."""
    if isinstance(value, (str, bool)):
        return value
    item = getattr(value, "item", None)
    plain = item() if callable(item) and getattr(value, "ndim", 0) == 0 else value
    if isinstance(plain, bool):
        return plain
    if isinstance(plain, int):
        return int(plain)
    if isinstance(plain, float) and math.isfinite(plain):
        return float(plain)
    raise ValueError(f"record({chapter!r}): {key}={value!r} is not a str, bool, int or finite float")
