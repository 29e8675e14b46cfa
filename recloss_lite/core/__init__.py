"""The core: data sets, negative samplers, losses, models (MF, iALS, EASE, HDCCF), metrics, the compiled kernels and
the training driver. Nothing here imports :mod:`recloss_lite.experiments` or :mod:`recloss_lite.book`."""
