"""Tests of recloss_lite.book.notebook: RECLOSS_FAST parsing, where figures and records go, the PNGs save_figure
writes and the JSON record writes and reads back. Every file goes to tmp_path, never to figures/ or book/_build."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import PIL.Image
import pytest
import torch
from matplotlib.figure import Figure

from recloss_lite.book import notebook
from recloss_lite.core.training import REPO_ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fast build whose records go to ``<tmp_path>/build/records`` and whose committed figures folder is
    ``<tmp_path>/committed``; returns ``<tmp_path>/build``."""
    monkeypatch.setenv("RECLOSS_FAST", "1")
    monkeypatch.setenv("RECLOSS_RECORDS", str(tmp_path / "build" / "records"))
    monkeypatch.setattr(notebook, "FIGURES", tmp_path / "committed")
    return tmp_path / "build"


def _figure() -> Figure:
    fig = Figure(figsize=(2.0, 1.5))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [1, 0, 1], color="red")
    ax.set_title("a title")
    return fig


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("1", True),
        ("true", True),
        (" TRUE ", True),
        ("0", False),
        ("false", False),
        ("", False),
        (" 0\n", False),
    ],
)
def test_fast_mode_reads_recloss_fast(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("RECLOSS_FAST", raising=False)
    else:
        monkeypatch.setenv("RECLOSS_FAST", value)
    assert notebook.fast_mode() is expected


@pytest.mark.parametrize("value", ["2", "yes", "on", "fast", "01"])
def test_fast_mode_refuses_other_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RECLOSS_FAST", value)
    with pytest.raises(ValueError, match=f"RECLOSS_FAST={value!r}: allowed values are 1 / true"):
        notebook.fast_mode()


def test_records_dir_is_the_environment_variable_else_the_book_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RECLOSS_RECORDS", raising=False)
    assert notebook.records_dir() == REPO_ROOT / "book" / "_build" / "records"
    monkeypatch.setenv("RECLOSS_RECORDS", str(tmp_path / "elsewhere"))
    assert notebook.records_dir() == tmp_path / "elsewhere"
    assert not (tmp_path / "elsewhere").exists()  # only asking creates nothing


def test_figures_dir_keeps_a_fast_build_away_from_the_committed_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RECLOSS_RECORDS", raising=False)
    monkeypatch.setenv("RECLOSS_FAST", "0")
    assert notebook.figures_dir() == REPO_ROOT / "figures"
    monkeypatch.setenv("RECLOSS_FAST", "1")
    assert notebook.figures_dir() == REPO_ROOT / "book" / "_build" / "figures-fast"
    monkeypatch.setenv("RECLOSS_RECORDS", str(tmp_path / "build" / "records"))
    assert notebook.figures_dir() == tmp_path / "build" / "figures-fast"
    assert not (tmp_path / "build").exists()


def test_save_figure_writes_a_png_of_the_figure_in_the_fast_folder(build: Path) -> None:
    path = notebook.save_figure(_figure(), "03_example")
    assert path == build / "figures-fast" / "03_example.png"
    content = path.read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    with PIL.Image.open(path) as png:
        assert png.format == "PNG" and png.info["dpi"] == pytest.approx((110, 110), abs=0.1)
    image = matplotlib.image.imread(path)  # 2 x 1.5 inches at 110 dpi, trimmed or widened to its contents
    assert image.ndim == 3 and 110 < image.shape[1] < 330 and 80 < image.shape[0] < 250
    red = (image[..., 0] > 0.9) & (image[..., 1] < 0.2) & (image[..., 2] < 0.2)
    assert red.any()  # the plotted line is in the picture
    assert not (notebook.FIGURES / "03_example.png").exists() and not notebook.FIGURES.exists()


def test_save_figure_is_deterministic_and_stamps_no_software_or_time(build: Path) -> None:
    first = notebook.save_figure(_figure(), "same").read_bytes()
    second = notebook.save_figure(_figure(), "same").read_bytes()
    assert first == second
    for stamp in (b"Software", b"matplotlib", b"Creation Time", b"tIME"):
        assert stamp not in first


def test_save_figure_in_full_mode_writes_the_committed_folder(build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOSS_FAST", "0")
    path = notebook.save_figure(_figure(), "02_full")
    assert path == notebook.FIGURES / "02_full.png" and path.read_bytes().startswith(PNG_SIGNATURE)
    assert not (build / "figures-fast").exists()


def test_record_writes_the_values_as_json_and_returns_them(build: Path) -> None:
    values = {"error": 1.5e-13, "count": 7, "name": "ml-100k", "verified": True, "numpy_float": np.float64(0.25)}
    returned = notebook.record("02_losses", **values)
    assert returned == values
    path = build / "records" / "02_losses.json"
    text = path.read_text()
    assert json.loads(text) == values
    assert list(json.loads(text)) == sorted(values)  # keys sorted: stable files
    assert isinstance(json.loads(text)["count"], int) and json.loads(text)["verified"] is True
    assert sorted(p.name for p in path.parent.iterdir()) == ["02_losses.json"]  # no temporary file left


def test_record_turns_numpy_and_torch_scalars_into_numbers(build: Path) -> None:
    notebook.record("04_hardness", single=np.float32(0.5), whole=np.int64(3), tensor=torch.tensor(2.5))
    stored = json.loads((build / "records" / "04_hardness.json").read_text())
    assert stored == {"single": 0.5, "whole": 3, "tensor": 2.5}
    assert isinstance(stored["whole"], int) and isinstance(stored["single"], float)  # numbers, not text


def test_record_replaces_the_previous_record_of_the_chapter(build: Path) -> None:
    notebook.record("05_debiasing", old=1.0, kept=2.0)
    notebook.record("05_debiasing", kept=3.0)
    notebook.record("06_linear_models", other=4.0)
    folder = build / "records"
    assert json.loads((folder / "05_debiasing.json").read_text()) == {"kept": 3.0}
    assert json.loads((folder / "06_linear_models.json").read_text()) == {"other": 4.0}


def test_record_refuses_a_value_json_cannot_hold_and_keeps_the_last_good_record(build: Path) -> None:
    notebook.record("07_training", recall=0.2)
    for bad in (
        {"model": object()},
        {"precision": float("nan")},
        {"ratio": np.float64("inf")},
        {"curve": [0.1]},
        {"missing": None},
    ):
        with pytest.raises(ValueError, match=rf"record\('07_training'\): {next(iter(bad))}=.* is not a str, bool"):
            notebook.record("07_training", recall=0.3, **bad)
    folder = build / "records"
    assert json.loads((folder / "07_training.json").read_text()) == {"recall": 0.2}
    assert sorted(p.name for p in folder.iterdir()) == ["07_training.json"]
