"""The figures of the training chapters: score samples and overlaps (chapters 07-09)."""

from __future__ import annotations

import numpy as np
import pytest

from recloss_lite.book import training_plots


def test_overlap_area_identities():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=500)
    assert training_plots.overlap_area(sample, sample.copy()) == pytest.approx(1.0)
    assert training_plots.overlap_area(sample, sample + 100.0) == 0.0
    assert 0.0 < training_plots.overlap_area(sample, sample + 1.0) < 1.0
    with pytest.raises(ValueError, match="non-empty"):
        training_plots.overlap_area(sample, np.array([]))
