"""ipywidgets panels of chapters 02, 04 and 05: sliders that redraw a figure of :mod:`recloss_lite.book.plots`.

ipywidgets is imported lazily (inside the functions), so the library imports without it. Each panel is
a :class:`Panel`: in JupyterLab releasing a slider redraws the figure in the panel's Output widget; in the
rendered book the panel's initial figure is shown (the panel's display bundle carries it as ``image/png``
next to the widget view); tests drive a panel with :meth:`Panel.set` and read :attr:`Panel.data`,
:attr:`Panel.figure` and :meth:`Panel.lines` back.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from recloss_lite.book import plots


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (the same settings as ``notebook.save_figure``).

    Chapters 02_losses, 04_hardness and 05_debiasing.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


class FigureDisplay:
    """What every panel shares: its current ``figure`` drawn into its ``output`` widget, and a display bundle
    that carries a PNG of that figure next to the widget view, so a static page (the rendered book) shows it."""

    figure: Figure

    def _show(self) -> None:
        from IPython.display import Image, display

        self.output.clear_output(wait=True)
        with self.output:
            display(Image(data=figure_png(self.figure)))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        bundle["image/png"] = base64.b64encode(figure_png(self.figure)).decode("ascii")
        return bundle


class Panel(FigureDisplay):
    """Sliders plus an Output widget holding the figure of the current values.

    Args:
        controls: name -> ipywidgets value widget; the names are ``compute``'s keyword arguments.
        compute: the study (a ``plots.*_data`` function) for the current values; its result is :attr:`data`.
        draw: the figure of that result (a ``plots`` figure function); the result is :attr:`figure`.

    Chapters 02_losses, 04_hardness and 05_debiasing.
    """

    def __init__(self, controls: dict[str, Any], compute: Callable[..., Any], draw: Callable[[Any], Figure]) -> None:
        import ipywidgets

        self.controls = controls
        self._compute, self._draw = compute, draw
        self._holding = False
        self.output = ipywidgets.Output()
        self.widget = ipywidgets.VBox(
            [
                ipywidgets.HBox(list(controls.values()), layout=ipywidgets.Layout(flex_flow="row wrap")),
                self.output,
            ]
        )
        self.data = compute(**self.values())
        self.figure: Figure = draw(self.data)
        self._show()
        for control in controls.values():
            control.observe(self._redraw, names="value")

    def values(self) -> dict[str, Any]:
        """The controls' current values by name."""
        return {name: control.value for name, control in self.controls.items()}

    def set(self, **values: Any) -> Figure:
        """Set several controls at once (one redraw) and return the new figure.

        An unknown name or a value outside a control's range (which ipywidgets would clip) -> ValueError.
        """
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"Panel.set: unknown controls {unknown}; allowed {sorted(self.controls)}")
        self._holding = True
        try:
            for name, value in values.items():
                control = self.controls[name]
                control.value = value
                if not np.isclose(control.value, value, rtol=1e-9, atol=0.0):
                    base = getattr(control, "base", None)  # a log slider's min/max are exponents
                    low, high = (base**control.min, base**control.max) if base else (control.min, control.max)
                    raise ValueError(f"Panel.set: {name}={value} is outside the control's range [{low}, {high}]")
        finally:
            self._holding = False
        self._redraw()
        return self.figure

    def lines(self) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        """Every line of the current figure: (axes title, line label) -> (x data, y data)."""
        return {
            (ax.get_title(), line.get_label()): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
            for ax in self.figure.axes
            for line in ax.get_lines()
        }

    def _redraw(self, change: dict | None = None) -> None:
        if self._holding:
            return
        self.data = self._compute(**self.values())
        self.figure = self._draw(self.data)
        self._show()


# Every panel here recomputes its study and re-renders its figure as a PNG on each change: 0.3 s (debiasing) to
# 0.8 s (the eight-axes loss panel) on one core, mostly the PNG. A live slider would queue one redraw per value it
# passes while dragged, so every slider reports its value when released (continuous_update=False).


def _slider(description: str, value: float, low: float, high: float, step: float) -> Any:
    import ipywidgets

    return ipywidgets.FloatSlider(
        value=value, min=low, max=high, step=step, description=description, continuous_update=False
    )


def _log_slider(description: str, value: float, low_exponent: float, high_exponent: float) -> Any:
    import ipywidgets

    return ipywidgets.FloatLogSlider(
        value=value,
        base=10,
        min=low_exponent,
        max=high_exponent,
        step=0.05,
        description=description,
        continuous_update=False,
        readout_format=".3g",
    )


def loss_panel(
    tau: float = 0.1, eps: float = 0.0, lam: float = 1.1, margin: float = 0.9, neg_weight: float = 150.0
) -> Panel:
    """Chapter 02_losses: every loss against s+ and one s_j; sliders for tau, eps, lam (exp family) and CCL's
    margin and negative weight. Draws :func:`plots.loss_curves` of :func:`plots.loss_curve_data`."""
    controls = {
        "tau": _log_slider("τ", tau, -2, 0),
        "eps": _slider("ε", eps, 0.0, 2.0, 0.05),
        "lam": _slider("λ", lam, 0.5, 2.0, 0.05),
        "margin": _slider("margin", margin, -1.0, 1.0, 0.05),
        "neg_weight": _log_slider("neg weight", neg_weight, 0, 3),
    }

    return Panel(controls, plots.loss_curve_data, plots.loss_curves)


def gradient_panel(tau: float = 0.1, lam: float = 1.1, eps: float = 0.0) -> Panel:
    """Chapter 04_hardness: d loss / d s_1 against s_1 for every loss; sliders for tau, lam and eps.
    Draws :func:`plots.gradient_curves` of :func:`plots.gradient_curve_data`."""
    controls = {
        "tau": _log_slider("τ", tau, -2, 0),
        "lam": _slider("λ", lam, 0.5, 2.0, 0.05),
        "eps": _slider("ε", eps, 0.0, 2.0, 0.05),
    }

    return Panel(controls, plots.gradient_curve_data, plots.gradient_curves)


def debiasing_panel(
    tau_plus: float = 0.1, tau_plus_true: float = 0.1, loss: str = "infonce", num_trials: int = 2000
) -> Panel:
    """Chapter 05_debiasing: the distribution of the biased, debiased and clamped estimates of E[phi(s-)]
    (``losses.debiasing_monte_carlo``) as the assumed tau+ and the true false-negative rate move."""
    from recloss_lite.core import losses

    controls = {
        "tau_plus": _slider("assumed τ⁺", tau_plus, 0.0, 0.5, 0.01),
        "tau_plus_true": _slider("true τ⁺", tau_plus_true, 0.0, 0.5, 0.01),
    }

    def compute(tau_plus: float, tau_plus_true: float) -> dict[str, Any]:
        return losses.debiasing_monte_carlo(tau_plus_true, tau_plus, loss=loss, num_trials=num_trials)

    return Panel(controls, compute, plots.estimator_histogram)
