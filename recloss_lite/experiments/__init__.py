"""The experiments: the presets each loss trains with, the full-scale reproduction, HDCCF's ablations, the results
store, the benchmark and the ``recloss-lite`` command line. Imports :mod:`recloss_lite.core` only."""
