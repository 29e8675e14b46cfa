"""The widgets of chapters 02, 04 and 05: build each panel, move its controls, check that the figure follows."""

from __future__ import annotations

import numpy as np
import pytest

from recloss_lite.book import widgets

pytest.importorskip("ipywidgets")


def _curve(panel: widgets.Panel, title: str, label_start: str = "") -> np.ndarray:
    matches = [y for (axes, label), (_, y) in panel.lines().items() if axes == title and label.startswith(label_start)]
    assert matches, f"no line {label_start!r} in panel {title!r}"
    return matches[0]


@pytest.mark.slow
def test_loss_panel_follows_its_sliders():
    panel = widgets.loss_panel()
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    sharp = _curve(panel, "infonce", "vs $s_1$").copy()
    bpr = _curve(panel, "bpr", "vs $s_1$").copy()
    mine_plus = _curve(panel, "mine+", "vs $s^+$").copy()

    panel.set(tau=1.0)
    assert panel.values()["tau"] == pytest.approx(1.0)
    flat = _curve(panel, "infonce", "vs $s_1$")
    # A larger temperature flattens InfoNCE against one negative's score.
    assert np.ptp(flat) < 0.5 * np.ptp(sharp)
    np.testing.assert_array_equal(_curve(panel, "bpr", "vs $s_1$"), bpr)  # BPR keeps its own tau

    panel.set(tau=0.1, lam=2.0)
    steeper = _curve(panel, "mine+", "vs $s^+$")
    np.testing.assert_allclose(steeper - steeper[0], mine_plus - mine_plus[0], atol=1e-9)  # lam: a constant shift
    assert not np.allclose(steeper, mine_plus)

    low_margin = panel.set(margin=0.0)
    assert low_margin is panel.figure
    ccl = _curve(panel, "ccl", "vs $s_1$")
    grid = panel.data["ccl"]["score"]
    assert ccl[np.searchsorted(grid, 0.5)] > ccl[np.searchsorted(grid, -0.5)]  # above the new margin it grows

    with pytest.raises(ValueError, match="unknown controls"):
        panel.set(temperature=1.0)


def test_gradient_panel_temperature_and_lambda():
    panel = widgets.gradient_panel()
    sharp = _curve(panel, "infonce").copy()
    plus = _curve(panel, "infonce+").copy()
    panel.set(tau=1.0)
    flat = _curve(panel, "infonce")
    # A larger temperature flattens the softmax-weight curve: the hardest/easiest ratio collapses.
    assert flat[-1] / flat[0] < 1e-3 * (sharp[-1] / sharp[0])
    panel.set(tau=0.1, lam=1.8)
    # eps = 0: the negatives' gradients are lam / tau times a softmax over the negatives only.
    np.testing.assert_allclose(_curve(panel, "infonce+"), plus * 1.8 / 1.1, rtol=1e-10)
    with pytest.raises(ValueError, match="outside"):
        panel.set(lam=5.0)


def test_debiasing_panel_moves_the_estimates():
    panel = widgets.debiasing_panel(tau_plus=0.0, tau_plus_true=0.0, num_trials=3000)
    unbiased = panel.data
    assert abs(unbiased["biased_mean"] - unbiased["target"]) < 4 * unbiased["biased_stderr"]

    panel.set(tau_plus_true=0.3)
    contaminated = panel.data
    assert contaminated["tau_plus_true"] == pytest.approx(0.3)
    assert contaminated["biased_mean"] > contaminated["target"] + 10 * contaminated["biased_stderr"]

    panel.set(tau_plus=0.3)
    corrected = panel.data
    assert abs(corrected["debiased_mean"] - corrected["target"]) < 4 * corrected["debiased_stderr"]
    assert corrected["debiased_std"] > corrected["biased_std"]  # unbiasedness costs variance
    titles = [ax.get_title() for ax in panel.figure.axes]
    assert any("0.30" in title for title in titles)


def _sliders(widget) -> list:
    """Every widget under ``widget`` (itself included) that has a ``continuous_update`` setting: the sliders."""
    found = [widget] if widget.has_trait("continuous_update") else []
    for child in getattr(widget, "children", ()):
        found += _sliders(child)
    return found


@pytest.mark.parametrize(
    "make_panel",
    [widgets.loss_panel, widgets.gradient_panel, lambda: widgets.debiasing_panel(num_trials=200)],
    ids=["loss", "gradient", "debiasing"],
)
def test_panel_sliders_redraw_on_release(make_panel):
    # Each change recomputes and re-renders the figure (0.3-0.8 s): dragging must not queue a redraw per value.
    panel = make_panel()
    sliders = _sliders(panel.widget)
    assert {id(slider) for slider in sliders} == {id(control) for control in panel.controls.values()}
    assert [slider.description for slider in sliders if slider.continuous_update] == []


def test_training_panel_sliders_sync_on_release(toy):
    from recloss_lite.book import live_widgets

    panel = live_widgets.TrainingPanel(toy, epochs=1, num_negatives=8, max_users=20)
    sliders = _sliders(panel.widget)
    assert sorted(slider.description for slider in sliders) == sorted(d for d, *_ in live_widgets._SLIDERS.values())
    assert [slider.description for slider in sliders if slider.continuous_update] == []
