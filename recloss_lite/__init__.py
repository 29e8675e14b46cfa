"""recloss-lite: a small library (and an executable book) on loss functions for recommendation.

Modules: ``data`` (datasets, splits), ``sampling`` (negative samplers), ``metrics`` (full-ranking and
leave-one-out evaluation), ``losses`` (every loss of the contract), ``models`` (MF), ``linear`` (iALS, EASE),
``hdccf`` (paper 003), ``train`` (the fit loop), ``theory`` (sympy derivations), ``plots``, ``widgets``, ``cli``.
"""

__version__ = "0.1.0"
