"""sympy symbols and the symbolic losses in a = s+ / tau and b_j = s_j / tau.

Shared by chapter 03_bounds (the claims' derivations) and chapter 04_hardness (``LAM_SYM``, softplus).
"""

from __future__ import annotations

import sympy as sp

# --------------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------------

N_SYM = sp.Symbol("N", positive=True, integer=True)
J_SYM = sp.Symbol("j", positive=True, integer=True)
A_SYM = sp.Symbol("a", real=True)  # a = s+ / tau
B_SYM = sp.IndexedBase("b", real=True)  # b_j = s_j / tau
X_SYM = sp.IndexedBase("x", positive=True)  # x_j = e^{b_j - a}
LAM_SYM = sp.Symbol("lambda", positive=True)
Z_SYM = sp.Symbol("z", real=True)


def _softplus(z: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(z))


def _neg_sum(expr: sp.Expr) -> sp.Expr:
    return sp.Sum(expr, (J_SYM, 1, N_SYM))


def _symbolic_infonce() -> sp.Expr:
    return -A_SYM + sp.log(sp.exp(A_SYM) + _neg_sum(sp.exp(B_SYM[J_SYM])))


def _symbolic_mine(lam: sp.Expr = 1) -> sp.Expr:
    return -A_SYM + lam * sp.log(_neg_sum(sp.exp(B_SYM[J_SYM])) / N_SYM)


def _symbolic_infonce_plus(eps: sp.Expr, lam: sp.Expr) -> sp.Expr:
    return -A_SYM + lam * sp.log(eps * sp.exp(A_SYM) + _neg_sum(sp.exp(B_SYM[J_SYM])))
