"""The whole book, built once in fast mode, then checked page by page: as HTML and in headless Chromium.

Marker ``book``. The build goes to ``$RECLOSS_BOOK_BUILD`` if set (to keep it for inspection), else to a
temporary folder; the chapters' recorded numbers go to ``<build>/records`` and Chromium's screenshots to
``<build>/screenshots/<chapter>.png``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from conftest import headless_chromium

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


def _toc_files() -> list[str]:
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    for entry in toc.get("chapters", []):
        files.append(entry["file"])
    for part in toc.get("parts", []):
        files.extend(entry["file"] for entry in part.get("chapters", []))
    return [Path(name).with_suffix("").as_posix() for name in files]


CHAPTERS = _toc_files()


def _jupyter_book() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    if script.exists():
        return [str(script)]
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    return [found]


@pytest.fixture(scope="session")
def build() -> Path:
    """Build the book once (fast mode, warnings are errors); return the output folder."""
    given = os.environ.get("RECLOSS_BOOK_BUILD")
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="recloss-book-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RECLOSS_FAST": "1", "RECLOSS_RECORDS": str(folder / "records")}
    command = [*_jupyter_book(), "build", str(BOOK), "--path-output", str(folder), "-W", "-n", "--keep-going", "--all"]
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    log = completed.stdout + completed.stderr
    (folder / "build.log").write_text(log)
    assert completed.returncode == 0, f"jupyter-book build failed ({completed.returncode}); log tail:\n{log[-6000:]}"
    return folder


class _Page(HTMLParser):
    """Collects what the checks need from a rendered page: images, math, and the text of cell outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.math = 0
        self.error_outputs: list[str] = []
        self.output_text: list[str] = []
        self._output_depth = 0
        self._stack: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if tag == "img" and values.get("src"):
            self.images.append(values["src"])
        if "math" in classes:
            self.math += 1
        if "output" in classes and ({"stderr", "traceback"} & set(classes)):
            self.error_outputs.append(" ".join(classes))
        if tag in {"br", "img", "meta", "link", "input", "hr"}:
            return
        opens_output = "cell_output" in classes
        self._stack.append(opens_output)
        self._output_depth += opens_output

    def handle_endtag(self, tag: str) -> None:
        if tag in {"br", "img", "meta", "link", "input", "hr"} or not self._stack:
            return
        self._output_depth -= self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._output_depth > 0:
            self.output_text.append(data)


def _page(build: Path, chapter: str) -> tuple[Path, _Page]:
    path = build / "_build" / "html" / f"{chapter}.html"
    assert path.exists(), f"{path} was not rendered"
    parser = _Page()
    parser.feed(path.read_text(encoding="utf-8"))
    return path, parser


def _source(chapter: str) -> str:
    for suffix in (".md", ".ipynb"):
        path = BOOK / f"{chapter}{suffix}"
        if path.exists():
            return path.read_text(encoding="utf-8")
    raise AssertionError(f"no source for {chapter}")


def _is_notebook(chapter: str) -> bool:
    return "```{code-cell}" in _source(chapter) or (BOOK / f"{chapter}.ipynb").exists()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_page_has_no_error_output(build, chapter):
    _, page = _page(build, chapter)
    assert not page.error_outputs, f"{chapter}: error/stderr outputs {page.error_outputs}"
    text = "".join(page.output_text)
    for marker in ("Traceback (most recent call last)", "Error:", "Exception:"):
        assert marker not in text, f"{chapter}: {marker!r} in a cell output"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_page_images_exist(build, chapter):
    path, page = _page(build, chapter)
    for src in page.images:
        if src.startswith(("http://", "https://", "data:")):
            continue
        assert (path.parent / src.split("#")[0].split("?")[0]).exists(), f"{chapter}: missing image {src}"
    if _is_notebook(chapter) and "save_figure(" in _source(chapter):
        figures = [src for src in page.images if "_images/" in src]
        assert figures, f"{chapter} saves figures but shows none"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_widgets_show_their_initial_figure(build, chapter):
    """A widget's initial figure must be visible without the widget JavaScript (offline, or no kernel).

    The panels of ``recloss_lite.book.widgets`` put it next to the widget view as ``image/png``; MyST-NB renders
    the PNG when ``book/_config.yml`` ranks the widget view after it, e.g.
    ``nb_mime_priority_overrides: [["html", "application/vnd.jupyter.widget-view+json", 55]]``.
    """
    path, _ = _page(build, chapter)
    html = path.read_text(encoding="utf-8")
    assert '<script type="application/vnd.jupyter.widget-view+json">' not in html, (
        f"{chapter}: a widget is rendered as a bare widget view; rank it after image/png in book/_config.yml "
        "(nb_mime_priority_overrides) so that its initial figure shows"
    )


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_page_has_math(build, chapter):
    _, page = _page(build, chapter)
    if "$" in _source(chapter):
        assert page.math > 0, f"{chapter}: its source has math but the page has no math element"


@pytest.mark.parametrize("chapter", [chapter for chapter in CHAPTERS if "record(" in _source(chapter)])
def test_recorded_numbers(build, chapter):
    path = build / "records" / f"{chapter}.json"
    assert path.exists(), f"{chapter} recorded nothing ({path})"
    values = json.loads(path.read_text())
    assert values, f"{chapter}: empty record"
    for key, value in values.items():
        if isinstance(value, float):
            assert math.isfinite(value), f"{chapter}: {key} = {value}"
    check = RECORD_CHECKS.get(chapter)
    if check is not None:
        check(values)


def _check_bounds(values: dict) -> None:
    assert values["claims"] >= 9
    assert values["sympy_true"] == values["claims"] and values["sympy_undecided"] == 0
    assert values["numeric_ok"] == values["claims"]
    assert values["smallest_margin"] >= -1e-9


def _check_losses(values: dict) -> None:
    assert values["largest_identity_error"] < 1e-10
    assert 0 <= values["infonce_at_top"] < 0.05
    assert abs(values["softmax_bias_logq"]) < 0.2 * values["softmax_bias_uncorrected"]
    assert abs(values["softmax_bias_uniform"]) < 0.2 * values["softmax_bias_uncorrected"]


def _check_hardness(values: dict) -> None:
    assert values["sympy_verified"] == values["sympy_statements"]
    assert values["largest_gradient_error"] < 1e-10 and values["largest_balance_error"] < 1e-10
    assert values["hardness_ratio_infonce"] > 100 * values["hardness_ratio_bpr"] > 100
    assert values["dns_weight_m16"] > 2 * values["dns_weight_uniform"]  # DNS hands BPR negatives with gradient


def _check_debiasing(values: dict) -> None:
    assert values["fn_rate_ml100k"] == pytest.approx(values["fn_rate_ml100k_exact"], rel=0.2)
    assert 0 < values["fn_rate_gowalla"] < values["fn_rate_ml100k"] < values["positive_rate_ml100k_uniform"]
    assert values["sympy_verified"] == 3
    assert abs(values["infonce_bias_debiased"]) < 0.5 * abs(values["infonce_bias_biased"])
    assert values["infonce_bias_biased"] > 0


def _check_linear(values: dict) -> None:
    assert values["sympy_verified"] == values["sympy_statements"]
    assert values["ials_score_error"] < 1e-3 and values["ease_weight_error"] < 1e-3
    assert values["ials_recall_direct"] == pytest.approx(values["ials_recall_plain"], abs=2e-3)
    assert values["ease_recall_direct"] == pytest.approx(values["ease_recall"], abs=2e-3)
    assert values["ials_recall_plain"] > 0.1


def _check_data(values: dict) -> None:
    assert (values["gowalla_users"], values["gowalla_items"], values["gowalla_interactions"]) == (29858, 40981, 1027370)
    assert values["yelp2018_interactions"] == 1561406 and values["ml100k_interactions"] == 100000
    assert values["ml100k_random_recall20"] == pytest.approx(values["ml100k_expected_random_recall20"], rel=0.5)
    assert values["ml100k_mostpop_recall20"] > 5 * values["ml100k_random_recall20"]
    assert values["gowalla_mostpop_recall20"] > 0.02 and 0 < values["gowalla_top20_share"] < 1
    # sampled candidates flatter the same model: leave-one-out HR@10 among 100 items >> among all items
    assert values["ml100k_loo_mostpop_hr10_sampled"] > 3 * values["ml100k_loo_mostpop_hr10_full"]


def _check_training(values: dict) -> None:
    random_recall = 20 / 1682  # ml-100k: 20 of 1,682 items
    assert values["losses_trained"] == 13
    assert 5 * random_recall < values["worst_recall"] <= values["best_recall"] < 1
    assert values["worst_recall"] <= values["bpr_recall"] <= values["best_recall"]
    assert values["worst_recall"] <= values["mine_plus_recall"] <= values["best_recall"]
    assert values["gowalla_runs_stored"] >= 16 and values["yelp2018_runs_stored"] >= 16


def _check_scores(values: dict) -> None:
    assert values["losses_trained"] == 13
    assert 0 < values["smallest_overlap"] <= values["widget_overlap"] <= values["largest_overlap"] < 1
    assert -1 <= values["rank_correlation"] <= 1 and values["widget_recall"] > 5 * 20 / 1682


def _check_sensitivity(values: dict) -> None:
    assert values["runs"] >= 10 and 0 < values["largest_spread"] < 1
    assert values["best_lam"] in (1.0, 1.1, 1.2, 1.3, 1.4) and values["best_eps"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert values["best_tau"] in (0.05, 0.1, 0.2, 0.5) and values["best_num_negatives"] in (16, 64, 256, 1024)
    assert values["best_tau_plus"] in (0.0, 0.05, 0.1, 0.15, 0.2)


def _check_hdccf(values: dict) -> None:
    assert values["eq4_max_error"] < 1e-12
    slopes = [values[key] for key in ("proposition_slope", "proposition_user_slope", "proposition_item_slope")]
    assert max(slopes) == pytest.approx(min(slopes), rel=0.05)
    assert abs(values["theorem1_f_debiased"] - values["theorem1_f_ideal"]) < 4 * values["theorem1_f_debiased_stderr"]
    assert values["theorem1_f_biased"] > values["theorem1_f_ideal"] + 20 * values["theorem1_f_debiased_stderr"]
    for key in ("hdccf_hr10", "hdccf_plain_hr10", "mf_bpr_hr10", "mf_infonce_hr10"):
        assert 0.1 < values[key] < 1, key  # above random: 1 test item among 100 candidates gives HR@10 = 0.1
    assert 0 < values["overlap_plain"] < 1 and 0 < values["overlap_modulated"] < 1


RECORD_CHECKS = {
    "01_data": _check_data,
    "07_training": _check_training,
    "08_score_distributions": _check_scores,
    "09_sensitivity": _check_sensitivity,
    "10_hdccf": _check_hdccf,
    "02_losses": _check_losses,
    "03_bounds": _check_bounds,
    "04_hardness": _check_hardness,
    "05_debiasing": _check_debiasing,
    "06_linear_models": _check_linear,
}


@pytest.fixture(scope="session")
def browser(build):
    with headless_chromium("1280,1600") as driver:
        driver.set_page_load_timeout(120)
        yield driver


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_page_in_chromium(build, browser, chapter):
    path = build / "_build" / "html" / f"{chapter}.html"
    browser.get(path.as_uri())
    browser.execute_script("return document.readyState")  # get() returns once the page has loaded
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    )
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"{chapter}: images that did not load: {broken}"
    if "$" in _source(chapter):
        assert browser.execute_script("return document.querySelectorAll('.math').length;") > 0
        # MathJax is served by the book itself (sphinx-mathjax-offline): the math must be typeset, offline too.
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 60).until(
            lambda driver: driver.execute_script("return document.querySelectorAll('mjx-container').length;") > 0,
            message=f"{chapter}: MathJax typeset no math within 60 s",
        )
    errors = browser.execute_script("return document.querySelectorAll('.output.stderr, .output.traceback').length;")
    assert errors == 0, f"{chapter}: {errors} error outputs in the page"
    assert re.search(r"\S", browser.execute_script("return document.body.innerText;"))
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1280, min(max(height, 800), 16000))
    folder = build / "screenshots"
    folder.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(folder / f"{chapter}.png"))
    browser.set_window_size(1280, 1600)
