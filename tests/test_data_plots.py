"""The figure of chapter 01_data (recloss_lite.book.data_plots): the long tail drawn from the popularities given,
on the generated ``toy`` data set and on hand-made counts."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from recloss_lite.book import data_plots
from recloss_lite.core import data


def _lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata())) for line in ax.lines}


def test_long_tail_draws_each_data_sets_ranked_popularity_and_cumulative_share(toy) -> None:
    counts = data.item_popularity(toy.train)
    popularity = {"toy": counts, "hand": np.array([0, 5, 1, 3, 0, 3])}
    fig = data_plots.long_tail(popularity, 0.2)
    FigureCanvasAgg(fig).draw()  # the figure renders
    rank_axis, share_axis = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 2
    assert (rank_axis.get_title(), share_axis.get_title()) == ("long tail", "cumulative share")
    assert rank_axis.get_xscale() == rank_axis.get_yscale() == "log"

    ranks, shares = _lines(rank_axis), _lines(share_axis)
    assert list(ranks) == ["toy", "hand"] and set(popularity) < set(shares)
    # hand-made counts, written out: most popular first, items without interactions left off the log panel
    assert np.array_equal(ranks["hand"][0], [1, 2, 3, 4]) and np.array_equal(ranks["hand"][1], [5, 3, 3, 1])
    assert np.allclose(shares["hand"][0], np.arange(1, 7) / 6)
    assert np.allclose(shares["hand"][1], np.array([5, 8, 11, 12, 12, 12]) / 12)
    # the toy data set: every count drawn once, in descending order, the cumulative share ending at 1
    ranked = np.sort(counts)[::-1]
    assert np.array_equal(ranks["toy"][1], ranked[ranked > 0])
    assert np.all(np.diff(ranks["toy"][1]) <= 0)
    assert np.allclose(shares["toy"][1], np.cumsum(ranked) / counts.sum()) and shares["toy"][1][-1] == 1.0
    for x, y in (*ranks.values(), *shares.values()):
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))


def test_long_tail_marks_the_top_fraction_in_its_legend() -> None:
    fig = data_plots.long_tail({"a": np.array([4, 2, 1, 1, 0])}, 0.35)
    share_axis = fig.axes[1]
    marker = share_axis.lines[-1]
    assert marker.get_label() == "top 35% of items" and np.allclose(marker.get_xdata(), 0.35)
    assert [text.get_text() for text in share_axis.get_legend().get_texts()] == ["a", "top 35% of items"]
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["a"]
