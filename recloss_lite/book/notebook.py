"""Small helpers the book's chapters share: fast mode, figure paths and recorded headline numbers.

Every chapter's ``parameters`` cell calls :func:`fast_mode`; its last cell calls :func:`record`, whose JSON the
notebook tests read back (the MS Recommenders habit, without papermill).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.figure

from ..core.training import REPO_ROOT

FIGURES = REPO_ROOT / "figures"
FAST_ENV = "RECLOSS_FAST"
RECORDS_ENV = "RECLOSS_RECORDS"


def fast_mode() -> bool:
    """True when the environment variable ``RECLOSS_FAST`` is ``1``: CI's small but real settings."""
    value = os.environ.get(FAST_ENV, "0").strip().lower()
    if value not in {"0", "1", "true", "false", ""}:
        raise ValueError(f"{FAST_ENV}={value!r}: allowed values are 0 or 1")
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

    The notebook tests read this file back and assert the values with tolerances.
    """
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True, default=float))
    os.replace(tmp, path)
    return values
