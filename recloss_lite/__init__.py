"""recloss-lite: a small library (and an executable book) on loss functions for recommendation.

Three layers, each importing only the ones below it:

* :mod:`recloss_lite.core`: ``data`` (datasets, splits), ``sampling`` (negative samplers), ``losses`` (every loss of
  the contract), ``models`` (MF), ``linear`` (iALS, EASE), ``hdccf``, ``metrics`` (full-ranking and leave-one-out
  evaluation), ``kernels`` (compiled hot loop), ``training`` (the fit loop).
* :mod:`recloss_lite.experiments`: ``presets``, ``reproduce``, ``ablations``, ``results``, ``benchmark``, ``cli``.
* :mod:`recloss_lite.book`: ``theory`` (sympy derivations), ``plots``, ``training_plots``, ``widgets``,
  ``live_widgets``, ``notebook``.
"""

__version__ = "0.1.0"
