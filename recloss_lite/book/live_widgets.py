"""A panel that trains MF live on ml-100k for a chosen loss and eps, lam, tau+ (chapters 07_training and
08_score_distributions).

ipywidgets is imported lazily. Pressing *train* (or calling :meth:`TrainingPanel.train`) trains a small model
for a few seconds and redraws its validation curve and its positive / negative score densities. In the rendered
book the initial state shows (the display bundle carries the figure as ``image/png`` next to the widget view).
Tests drive the panel with :meth:`TrainingPanel.set` and :meth:`TrainingPanel.train` and read :attr:`metrics`,
:attr:`overlap` and :attr:`figure` back.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..core import data, losses
from ..core.training import fit
from ..experiments import reproduce
from . import training_plots
from .widgets import FigureDisplay

BASE_LOSSES = ("bpr", "softmax", "infonce", "infonce+", "dcl", "mine", "mine+", "mse", "ccl")
# Each slider's loss parameter and range: (description, low, high, step).
_SLIDERS = {"eps": ("ε", 0.0, 1.0, 0.05), "lam": ("λ", 1.0, 1.4, 0.02), "tau_plus": ("τ⁺", 0.0, 0.2, 0.01)}


class TrainingPanel(FigureDisplay):
    """Loss menu, eps / lam / tau+ sliders, a *train* button and an Output widget with the figure.

    Args:
        dataset: the data set to train on (default ml-100k, loaded here).
        loss, eps, lam, tau_plus: initial control values; a parameter the chosen loss does not take is ignored.
        epochs, num_negatives: the small run's size (``reproduce.config_for(dataset, loss, ...)`` otherwise).
        max_users: users whose test positives and random negatives are scored for the densities.
    """

    def __init__(
        self,
        dataset: data.Dataset | None = None,
        loss: str = "mine+",
        eps: float = 0.0,
        lam: float = 1.1,
        tau_plus: float = 0.0,
        epochs: int = 3,
        num_negatives: int = 128,
        max_users: int = 300,
    ) -> None:
        import ipywidgets

        self.dataset = dataset if dataset is not None else data.load("ml-100k")
        self.epochs, self.num_negatives, self.max_users = epochs, num_negatives, max_users
        self.controls: dict[str, Any] = {
            "loss": ipywidgets.Dropdown(options=list(BASE_LOSSES), value=loss, description="loss")
        }
        initial = {"eps": eps, "lam": lam, "tau_plus": tau_plus}
        # A slider only sets a value (training, seconds long, waits for the button): it syncs it when released.
        for name, (description, low, high, step) in _SLIDERS.items():
            self.controls[name] = ipywidgets.FloatSlider(
                value=initial[name], min=low, max=high, step=step, description=description, continuous_update=False
            )
        self.button = ipywidgets.Button(description="train", button_style="primary")
        self.button.on_click(lambda _: self.train())
        self.output = ipywidgets.Output()
        self.widget = ipywidgets.VBox(
            [
                ipywidgets.HBox([*self.controls.values(), self.button], layout=ipywidgets.Layout(flex_flow="row wrap")),
                self.output,
            ]
        )
        self.metrics: dict[str, float] = {}
        self.overlap = float("nan")
        self.figure = Figure()
        self.train()

    def values(self) -> dict[str, Any]:
        """The controls' current values by name."""
        return {name: control.value for name, control in self.controls.items()}

    def set(self, **values: Any) -> None:
        """Set controls by name (no training: call :meth:`train`). Unknown name or value out of range ->
        ValueError."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"TrainingPanel.set: unknown controls {unknown}; allowed {sorted(self.controls)}")
        for name, value in values.items():
            if name == "loss" and value not in BASE_LOSSES:
                raise ValueError(f"TrainingPanel.set: loss={value!r}; allowed {BASE_LOSSES}")
            if name != "loss" and not _SLIDERS[name][1] <= value <= _SLIDERS[name][2]:
                raise ValueError(
                    f"TrainingPanel.set: {name}={value} is outside [{_SLIDERS[name][1]}, {_SLIDERS[name][2]}]"
                )
            self.controls[name].value = value

    def loss_params(self) -> dict[str, float]:
        """The slider values the chosen loss takes (``losses.defaults``)."""
        loss = self.controls["loss"].value
        return {name: float(self.controls[name].value) for name in _SLIDERS if name in losses.defaults(loss)}

    def train(self) -> dict[str, float]:
        """Train with the current values, redraw, and return the test metrics (recall@20, ndcg@20, ...)."""
        loss = self.controls["loss"].value
        config = reproduce.config_for(
            self.dataset.name,
            loss,
            self.loss_params(),
            epochs=self.epochs,
            num_negatives=self.num_negatives if loss != "bpr" else 1,
            patience=self.epochs,
        )
        started = time.perf_counter()
        result, model = fit(config, dataset=self.dataset, progress=False)
        pos, neg = training_plots.score_samples(model, self.dataset, self.max_users)
        self.metrics, self.history = result["metrics"], result["history"]
        self.seconds = time.perf_counter() - started
        self.figure = self._draw(loss, pos, neg)
        self._show()
        return self.metrics

    def _draw(self, loss: str, pos: np.ndarray, neg: np.ndarray) -> Figure:
        fig = Figure(figsize=(9.0, 3.2), layout="constrained")
        curve, densities = fig.subplots(1, 2)
        epochs = [entry["epoch"] for entry in self.history if "valid" in entry]
        curve.plot(epochs, [entry["valid"]["recall@20"] for entry in self.history if "valid" in entry], marker="o")
        params = ", ".join(f"{name}={value:g}" for name, value in self.loss_params().items())
        curve.set_title(f"{loss} ({params}): test recall@20 {self.metrics['recall@20']:.4f}", fontsize=9)
        curve.set_xlabel("epoch")
        curve.set_ylabel("validation recall@20")
        self.overlap = training_plots.draw_scores(densities, pos, neg, f"scores after {self.epochs} epochs")
        densities.legend(fontsize=7)
        return fig
