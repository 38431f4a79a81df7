"""Checks for the chapter 11 exercises: scaling laws.

Usage in the notebook::

    from utils.checks import ch11 as check
    check.chinchilla_split(chinchilla_split)
"""

from __future__ import annotations

import math

import numpy as np

from ..long_tail import zipf_probs
from ..scaling import PUBLISHED, compute_optimal, fit_power_law, predict
from ..tiny_world import _entropy
from . import Fail, as_array, as_number, call, question

QUESTIONS: dict = {}


def _pair(got, what):
    if got is None:
        raise Fail(f"{what} returned None: did you forget `return`?")
    try:
        a, b = got
        return float(a), float(b)
    except (TypeError, ValueError):
        raise Fail(f"{what} must return a pair of two numbers, got {got!r}") from None


@question(QUESTIONS, "q1", "the compute-optimal split", points=2)
def chinchilla_split(fn):
    for C, r in [(5.76e23, 20.0), (1e21, 20.0), (3.0e20, 100.0), (6.0, 1.0)]:
        n_exp = math.sqrt(C / (6 * r))
        n, d = _pair(fn(C, r), "chinchilla_split")
        if math.isclose(n, math.sqrt(C / r), rel_tol=1e-6):
            raise Fail("you left out the 6 of C = 6 N D")
        if not (math.isclose(n, n_exp, rel_tol=1e-6) and math.isclose(d, r * n_exp, rel_tol=1e-6)):
            raise Fail(f"for C={C:.3g}, {r:g} tokens per parameter: expected N={n_exp:.4g}, D={r * n_exp:.4g}, got "
                       f"N={n:.4g}, D={d:.4g}; solve C = 6 N D with D = r N")
    n, d = _pair(fn(5.76e23, 20.0), "chinchilla_split")
    return f"Chinchilla's budget, 5.76e23 FLOPs: N = {n / 1e9:.0f}B parameters, D = {d / 1e12:.2f}T tokens"


@question(QUESTIONS, "q2", "fit a power law on log-log axes", points=2)
def fit_loglog(fn):
    rng = np.random.default_rng(0)
    x = np.logspace(3, 7, 9)
    for k, p, noise in [(30.0, 0.3, 0.0), (5.0, 0.076, 0.0), (400.0, 0.5, 0.02)]:
        y = k * x ** -p * np.exp(noise * rng.normal(size=x.size))
        k_exp, p_exp = fit_power_law(x, y)
        got = call(fn, x, y)
        gk, gp = _pair(got, "fit_loglog")
        if math.isclose(gp, -p_exp, rel_tol=1e-4):
            raise Fail("the sign of p: y = k * x**(-p), so p is minus the slope of log y against log x")
        if math.isclose(gk, math.log(k_exp), rel_tol=1e-4):
            raise Fail("return k itself, not log k: exponentiate the intercept")
        if not (math.isclose(gk, k_exp, rel_tol=1e-4) and math.isclose(gp, p_exp, rel_tol=1e-4)):
            raise Fail(f"expected k={k_exp:.4g}, p={p_exp:.4g}, got k={gk:.4g}, p={gp:.4g}: fit a straight line "
                       "to (log x, log y) by least squares (np.polyfit(np.log(x), np.log(y), 1))")
    return "a straight line on log-log axes: slope -p, intercept log k"


@question(QUESTIONS, "q3", "the best model on an isoFLOP line", points=2)
def isoflop_best(fn):
    H = PUBLISHED["hoffmann"]
    sizes = np.logspace(8, 12, 41)
    for C in (1e21, 5.76e23, 1e25):
        losses = [predict(H, n, C / (6 * n)) for n in sizes]
        expected = float(sizes[int(np.argmin(losses))])
        got = call(fn, H, C, sizes)  # copies: H is the module's PUBLISHED entry
        if got is None:
            raise Fail("isoflop_best returned None: did you forget `return`?")
        got = as_number(got, "isoflop_best(...)")
        if math.isclose(got, float(sizes[int(np.argmax(losses))])):
            raise Fail("that is the size with the HIGHEST loss; take the lowest")
        if not math.isclose(got, expected, rel_tol=1e-9):
            raise Fail(f"for C={C:.3g}: expected N={expected:.4g}, got {got:.4g}; for each N the tokens are "
                       "D = C / (6 N), the loss E + A/N^alpha + B/D^beta")
    best = as_number(call(fn, H, 5.76e23, sizes), "isoflop_best(...)")
    return (f"at Chinchilla's budget this law's best size on the grid is {best / 1e9:.0f}B parameters (the paper's "
            "other two methods gave about 70B; Besiroglu et al., 2024, found the parametric fit inconsistent with them)")


@question(QUESTIONS, "q4", "exact match from per-digit accuracy", points=2)
def exact_match(fn, threshold=None):
    p = np.linspace(0.0, 1.0, 11)
    for n in (1, 3, 6):
        got = as_array(call(fn, p, n), "exact_match")
        if got.shape != p.shape:
            raise Fail(f"return one value per entry of p, shape {p.shape}, got {got.shape}")
        if n > 1 and np.allclose(got, p * n):
            raise Fail("all n digits must be right: multiply the probabilities (p ** n), do not add them")
        if not np.allclose(got, p ** n):
            raise Fail(f"for n={n}, expected {np.round(p ** n, 4).tolist()}, got {np.round(got, 4).tolist()}")
    if threshold is not None:
        if not math.isclose(as_number(threshold, "per_digit_for_half"), 0.5 ** (1 / 6), rel_tol=1e-3):
            raise Fail(f"per_digit_for_half = {threshold}: the per-digit accuracy p with p ** 6 = 0.5 is 0.5 ** (1/6)")
    return f"a 6-digit answer needs {0.5 ** (1 / 6):.3f} per digit to be right half the time"


@question(QUESTIONS, "q5", "the entropy of a Zipf tail", points=2)
def zipf_entropy(fn):
    for n, s in [(1, 1.0), (10, 0.0), (1000, 1.5), (4000, 1.2), (50, 3.0)]:
        expected = _entropy(zipf_probs(n, s))
        got = call(fn, n, s)
        if got is None:
            raise Fail("zipf_entropy returned None: did you forget `return`?")
        got = as_number(got, f"zipf_entropy({n}, {s})")
        if expected > 0 and math.isclose(got, expected / math.log(2), rel_tol=1e-6):
            raise Fail("that is in bits: use the natural log (np.log), as losses are in nats")
        weights = [r ** -s for r in range(1, n + 1)]
        unnormalised = -math.fsum(w * math.log(w) for w in weights if w > 0)
        if n > 1 and s > 0 and math.isclose(got, unnormalised, rel_tol=1e-6):
            raise Fail("normalise first: p(r) = r**-s / sum_k k**-s, so the probabilities sum to 1")
        if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            raise Fail(f"for n={n}, s={s}: expected {expected:.6f} nats, got {got:.6f}; "
                       "H = -sum_r p(r) log p(r) with p(r) = r**-s / sum_k k**-s")
    return (f"1000 subjects: {_entropy(zipf_probs(1000, 0.0)):.3f} nats if uniform, "
            f"{_entropy(zipf_probs(1000, 1.5)):.3f} with s = 1.5 (a long tail is easier to predict on average)")


@question(QUESTIONS, "q6", "the compute-optimal size of a fitted law", points=2)
def optimal_split(fn):
    H = PUBLISHED["hoffmann"]
    cases = [(H, 5.76e23), (H, 1e21), ({"E": 0.4, "A": 30.0, "alpha": 0.5, "B": 200.0, "beta": 0.3}, 1e12)]
    for params, C in cases:
        n_exp, d_exp = (float(v) for v in compute_optimal(params, C))
        n, d = _pair(call(fn, params, C), "optimal_split")
        if math.isclose(n, d_exp, rel_tol=1e-4) and math.isclose(d, n_exp, rel_tol=1e-4):
            raise Fail("you returned (D, N): return the pair (N_opt, D_opt)")
        if not math.isclose(n * d * 6, C, rel_tol=1e-6):
            raise Fail(f"for C={C:.3g}: 6 * N * D = {6 * n * d:.4g}; the pair must spend the whole budget, D = C / (6 N)")
        if not math.isclose(n, n_exp, rel_tol=1e-4):
            raise Fail(f"for C={C:.3g}: expected N_opt={n_exp:.4g}, got {n:.4g}; G = (alpha A / (beta B))^(1/(alpha+beta)), "
                       "N_opt = G (C/6)^(beta/(alpha+beta))")
    n, d = (float(v) for v in compute_optimal(H, 5.76e23))
    return (f"the Chinchilla law's constants put Chinchilla's budget at N = {n / 1e9:.0f}B and "
            f"{d / n:.0f} tokens per parameter")
