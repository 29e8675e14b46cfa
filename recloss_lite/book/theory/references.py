"""numpy float64 references of the spec's losses, the claims' input cases and their numeric sides.

Used by the claims of chapter 03_bounds. No torch here: the numeric references (:func:`infonce`, :func:`mine`,
:func:`infonce_plus`, :func:`bpr`) are numpy float64 versions of the spec's formulas, used to check the claims;
tests compare them with ``recloss_lite.core.losses``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp, rel_entr

# --------------------------------------------------------------------------------------------------
# numpy float64 references of the spec's losses (one row per entry of pos)
# --------------------------------------------------------------------------------------------------


def _check_scores(pos: np.ndarray, neg: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0] or neg.shape[1] == 0:
        raise ValueError(f"theory: pos must be (B,) and neg (B, N) with N >= 1, got {pos.shape} and {neg.shape}")
    if not tau > 0:
        raise ValueError(f"theory: tau={tau} must be > 0")
    return pos / tau, neg / tau


def infonce(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """InfoNCE per row, (B,), (B, N) -> (B,): -a + log(e^a + sum_j e^{b_j}) (spec ``infonce``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    return logsumexp(np.concatenate([a[:, None], b], axis=1), axis=1) - a


def infonce_plus(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0, eps: float = 1.0, lam: float = 1.0) -> np.ndarray:
    """InfoNCE+ per row: -a + lam * log(eps * e^a + sum_j e^{b_j}) (Li & Jin; spec ``infonce+``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    if eps == 0:
        return lam * logsumexp(b, axis=1) - a
    return lam * logsumexp(np.concatenate([(a + math.log(eps))[:, None], b], axis=1), axis=1) - a


def mine(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0, lam: float = 1.0) -> np.ndarray:
    """MINE (lam = 1) / MINE+ per row: -a + lam * log(mean_j e^{b_j}) (spec ``mine``, ``mine+``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    return lam * (logsumexp(b, axis=1) - math.log(b.shape[1])) - a


def bpr(pos: np.ndarray, neg: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """BPR per row: sum_j softplus(b_j - a) (spec ``bpr``), float64.

    Chapter 03_bounds.
    """
    a, b = _check_scores(pos, neg, tau)
    return np.logaddexp(0.0, b - a[:, None]).sum(axis=1)


# --------------------------------------------------------------------------------------------------
# Input cases
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreCase:
    """A batch of rows with N negatives each: pos (B,), neg (B, N), temperature tau.

    Chapter 03_bounds.
    """

    pos: np.ndarray
    neg: np.ndarray
    tau: float


def score_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[ScoreCase]:
    """Random score batches (N log-uniform in 1..512, tau 0.01..10, scale 1e-3..1e2), then adversarial ones.

    Adversarial: ties at 0 and at +-1e4; the positive 2e4 above or below every negative at tau = 0.01; one
    negative dominating; N = 1; N = 4096 ties.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        num_negatives = int(np.exp(rng.uniform(0.0, math.log(512.0))))
        tau = float(np.exp(rng.uniform(math.log(0.01), math.log(10.0))))
        scale = float(np.exp(rng.uniform(math.log(1e-3), math.log(1e2))))
        offset = rng.normal(0.0, scale)
        pos = rng.normal(offset, scale, size=16)
        neg = rng.normal(0.0, scale, size=(16, num_negatives))
        cases.append(ScoreCase(pos, neg, tau))
    if adversarial:
        for tau in (0.01, 1.0):
            for level in (0.0, 1e4, -1e4):
                cases.append(ScoreCase(np.full(1, level), np.full((1, 8), level), tau))
            cases.append(ScoreCase(np.array([1e4]), np.full((1, 8), -1e4), tau))
            cases.append(ScoreCase(np.array([-1e4]), np.full((1, 8), 1e4), tau))
            cases.append(ScoreCase(np.array([0.0]), np.array([[1e4] + [-1e4] * 7]), tau))
        cases.append(ScoreCase(rng.normal(size=8), rng.normal(size=(8, 1)), 0.05))
        cases.append(ScoreCase(np.zeros(2), np.zeros((2, 4096)), 1.0))
    return cases


@dataclass(frozen=True)
class DistributionCase:
    """Two distributions P, Q over k outcomes and a critic T (k,).

    Chapter 03_bounds.
    """

    p: np.ndarray
    q: np.ndarray
    critic: np.ndarray


def distribution_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[DistributionCase]:
    """Random (P, Q, T) with k in 2..20, Dirichlet concentrations 0.05..10; adversarial: the optimal critic
    log(P/Q) + c (equality), P = Q with a constant critic, critics of +-1e4, nearly degenerate P.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        k = int(rng.integers(2, 21))
        concentration = float(np.exp(rng.uniform(math.log(0.05), math.log(10.0))))
        p, q = rng.dirichlet(np.full(k, concentration), size=2)
        p, q = np.maximum(p, 1e-300), np.maximum(q, 1e-300)
        critic = rng.normal(0.0, float(np.exp(rng.uniform(math.log(0.1), math.log(20.0)))), size=k)
        cases.append(DistributionCase(p / p.sum(), q / q.sum(), critic))
    if adversarial:
        p, q = rng.dirichlet(np.ones(5), size=2)
        cases.append(DistributionCase(p, q, np.log(p / q) + 3.0))
        cases.append(DistributionCase(p, p, np.full(5, 7.0)))
        cases.append(DistributionCase(p, q, np.array([1e4, -1e4, 1e4, -1e4, 0.0])))
        skewed = np.array([1.0 - 4e-12, 1e-12, 1e-12, 1e-12, 1e-12])
        cases.append(DistributionCase(skewed, q, np.log(skewed / q)))
        cases.append(DistributionCase(skewed, q, rng.normal(0.0, 100.0, size=5)))
    return cases


@dataclass(frozen=True)
class SampleCase:
    """A discrete score distribution: values (k,) with probabilities (k,), and a sample size N.

    Chapter 03_bounds.
    """

    values: np.ndarray
    probs: np.ndarray
    num_samples: int


def sample_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[SampleCase]:
    """Random k-point score distributions (k in 1..4, N in 1..12, scale 1e-2..30); adversarial: a point mass,
    values of +-1e4, probabilities of 1e-12.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        k = int(rng.integers(1, 5))
        scale = float(np.exp(rng.uniform(math.log(1e-2), math.log(30.0))))
        cases.append(SampleCase(rng.normal(0.0, scale, size=k), rng.dirichlet(np.ones(k)), int(rng.integers(1, 13))))
    if adversarial:
        cases.append(SampleCase(np.array([3.0]), np.array([1.0]), 7))
        cases.append(SampleCase(np.array([-1e4, 1e4]), np.array([0.5, 0.5]), 5))
        cases.append(SampleCase(np.array([0.0, 1e4]), np.array([1.0 - 1e-12, 1e-12]), 9))
        cases.append(SampleCase(np.array([0.0, 50.0, -50.0]), np.array([0.98, 0.01, 0.01]), 12))
    return cases


@dataclass(frozen=True)
class JointCase:
    """A joint distribution of (user, item) (k_u, k_i), a critic f (k_u, k_i), the number of negatives N.

    Chapter 03_bounds.
    """

    joint: np.ndarray
    critic: np.ndarray
    num_negatives: int


def joint_cases(rng: np.random.Generator, n_trials: int, adversarial: bool = True) -> list[JointCase]:
    """Random joints (k_u, k_i in 2..4, N in 1..3) with random critics; adversarial: independent users and
    items (MI = 0), the optimal critic log p(i|u)/p(i), a deterministic joint with a critic of 1e4 on its
    support.

    Chapter 03_bounds.
    """
    cases = []
    for _ in range(n_trials):
        shape = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        concentration = float(np.exp(rng.uniform(math.log(0.1), math.log(10.0))))
        joint = rng.dirichlet(np.full(shape[0] * shape[1], concentration)).reshape(shape)
        joint = np.maximum(joint, 1e-300)
        critic = rng.normal(0.0, float(np.exp(rng.uniform(math.log(0.1), math.log(10.0)))), size=shape)
        cases.append(JointCase(joint / joint.sum(), critic, int(rng.integers(1, 4))))
    if adversarial:
        independent = np.outer(rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(4)))
        cases.append(JointCase(independent, rng.normal(0.0, 5.0, size=(3, 4)), 3))
        joint = rng.dirichlet(np.ones(12)).reshape(3, 4)
        optimal = np.log(joint / np.outer(joint.sum(1), joint.sum(0)))
        for num_negatives in (1, 2, 4):
            cases.append(JointCase(joint, optimal, num_negatives))
        diagonal = np.full((3, 3), 1e-300) + np.eye(3) / 3.0
        cases.append(JointCase(diagonal / diagonal.sum(), 1e4 * np.eye(3), 2))
    return cases


# --------------------------------------------------------------------------------------------------
# Numeric sides that are not plain losses
# --------------------------------------------------------------------------------------------------


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) = sum_i p_i log(p_i / q_i) in float64 (0 log 0 = 0).

    Chapter 03_bounds.
    """
    return float(rel_entr(p, q).sum())


def donsker_varadhan(p: np.ndarray, q: np.ndarray, critic: np.ndarray) -> float:
    """The Donsker-Varadhan bound E_P[T] - log E_Q[e^T] (MINE's objective, Belghazi et al. 2018), float64.

    Chapter 03_bounds.
    """
    return float(np.dot(p, critic) - logsumexp(critic, b=q))


def _compositions(num_samples: int, k: int) -> np.ndarray:
    """All count vectors (C, k) of ``num_samples`` draws from k outcomes."""
    draws = np.array(list(itertools.combinations_with_replacement(range(k), num_samples)), dtype=np.int64)
    return np.stack([np.bincount(row, minlength=k) for row in draws])


def expected_log_mean_exp(values: np.ndarray, probs: np.ndarray, num_samples: int) -> float:
    """E[log (1/N) sum_j e^{B_j}] for N iid draws of a discrete B, exactly (a sum over multinomial counts).

    Chapter 03_bounds.
    """
    counts = _compositions(num_samples, len(values))
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
        log_counts = np.log(counts)
    log_weight = gammaln(num_samples + 1) - gammaln(counts + 1).sum(axis=1)
    log_weight = log_weight + np.where(counts > 0, counts * log_probs, 0.0).sum(axis=1)
    log_mean = logsumexp(log_counts + values, axis=1) - math.log(num_samples)
    return float(np.dot(np.exp(log_weight), log_mean))


def log_mean_exp(values: np.ndarray, probs: np.ndarray) -> float:
    """log E[e^B] for a discrete B, float64.

    Chapter 03_bounds.
    """
    return float(logsumexp(values, b=probs))


def mutual_information(joint: np.ndarray) -> float:
    """I(U; I) of a joint distribution table (k_u, k_i), in nats.

    Chapter 03_bounds.
    """
    return kl_divergence(joint.ravel(), np.outer(joint.sum(axis=1), joint.sum(axis=0)).ravel())


def infonce_mi_estimate(joint: np.ndarray, critic: np.ndarray, num_negatives: int) -> float:
    """log(N + 1) - E[InfoNCE] exactly, for positives (u, i) ~ joint and N negatives iid from p(i).

    Enumerates every tuple of negatives (k_i^N of them), so keep k_i^N small.

    Chapter 03_bounds.
    """
    item_marginal = joint.sum(axis=0)
    tuples = np.array(list(itertools.product(range(joint.shape[1]), repeat=num_negatives)), dtype=np.int64)
    with np.errstate(divide="ignore"):
        tuple_log_prob = np.log(item_marginal)[tuples].sum(axis=1)  # (T,)
    neg = critic[:, tuples]  # (k_u, T, N)
    pos = critic[:, :, None, None]  # (k_u, k_i, 1, 1)
    shape = (critic.shape[0], critic.shape[1], len(tuples), num_negatives)
    scores = np.concatenate([np.broadcast_to(pos, shape[:3] + (1,)), np.broadcast_to(neg[:, None], shape)], axis=3)
    row_loss = logsumexp(scores, axis=3) - critic[:, :, None]  # (k_u, k_i, T)
    expected = np.einsum("ui,uit,t->", joint, row_loss, np.exp(tuple_log_prob))
    return float(math.log(num_negatives + 1) - expected)
