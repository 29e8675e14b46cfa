"""The book's helpers: sympy derivations and numeric claims (theory), figures (plots, training_plots), widgets and
notebook helpers. Imports :mod:`recloss_lite.core` and :mod:`recloss_lite.experiments`, never the other way."""
