"""Figures of the data chapter (01_data): the long tail of item popularity.

Data in, :class:`matplotlib.figure.Figure` out, built without pyplot (never ``plt.show()``); the counting stays
in :mod:`recloss_lite.core.data` and the chapter.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .plots import figure_grid


def long_tail(popularity: dict[str, np.ndarray], fraction: float) -> Figure:
    """Two panels for the item popularities of several data sets (``name -> counts (n_items,)``, training
    interactions per item, as ``data.item_popularity`` returns them).

    Left: popularity against popularity rank, log-log (items with no training interaction are left out: they
    have no place on a log axis). Right: the cumulative share of interactions against the fraction of items,
    most popular first, with the top ``fraction`` of items marked. Chapter 01_data.
    """
    fig, (rank_axis, share_axis) = figure_grid(2, 2, width=5.0, height=3.8)
    for name, counts in popularity.items():
        ranked = np.sort(np.asarray(counts))[::-1]
        seen = ranked[ranked > 0]
        rank_axis.loglog(np.arange(1, len(seen) + 1), seen, label=name)
        item_fraction = np.arange(1, len(ranked) + 1) / len(ranked)
        share_axis.plot(item_fraction, np.cumsum(ranked) / ranked.sum(), label=name)
    rank_axis.set(xlabel="item rank by popularity", ylabel="training interactions", title="long tail")
    share_axis.axvline(fraction, color="grey", linestyle=":", label=f"top {fraction:.0%} of items")
    share_axis.set(
        xlabel="fraction of items (most popular first)",
        ylabel="share of interactions",
        title="cumulative share",
    )
    for axis in (rank_axis, share_axis):
        axis.legend()
    return fig
