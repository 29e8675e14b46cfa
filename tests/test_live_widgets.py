"""The live training panel of chapters 07 and 08: it retrains when its values change (real ml-100k)."""

from __future__ import annotations

import pytest

from recloss_lite.book import live_widgets


@pytest.mark.slow
def test_widget_retrains_when_values_change(ml100k):
    panel = live_widgets.TrainingPanel(ml100k, loss="mine+", lam=1.0, epochs=1, num_negatives=32, max_users=50)
    first, first_figure = dict(panel.metrics), panel.figure
    assert 0 < first["recall@20"] < 1 and 0 <= panel.overlap <= 1
    panel.set(loss="infonce+", eps=1.0, lam=1.4, tau_plus=0.1)
    assert panel.loss_params() == {"eps": 1.0, "lam": 1.4, "tau_plus": 0.1}
    second = panel.train()
    assert second != first and panel.figure is not first_figure
    assert "infonce+" in panel.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="outside"):
        panel.set(lam=3.0)
