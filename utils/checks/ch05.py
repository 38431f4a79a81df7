"""Checks for the chapter 5 exercises: attention.

Usage in the notebook::

    from utils.checks import ch05 as check
    check.attention(attention)
"""

from __future__ import annotations

import numpy as np

from .. import attention as ref
from . import Fail, as_array, as_number, call, question

QUESTIONS: dict = {}
X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def _scaled_by(Q, K, V, divisor: float) -> np.ndarray:
    """softmax(Q K^T / divisor) V: attention with a given (possibly wrong) divisor of the scores."""
    return ref.scaled_dot_product_attention(Q * (Q.shape[1] ** 0.5 / divisor), K, V)


def _wrong_divisor(got, Q, K, V) -> str | None:
    """Name the wrong divisor of the scores that gives ``got``, if one does: sqrt of another width, d, or 1."""
    (T_q, d), (T_k, d_v) = Q.shape, V.shape
    widths: dict[int, list[str]] = {}
    for value, name in ((d_v, "the width of V, d_v,"), (T_q, "the number of queries"), (T_k, "the number of keys")):
        if value != d:  # equal to d: the same number, so not a mistake on this input
            widths.setdefault(value, []).append(name)
    fix = f"divide by sqrt(d), where d is the width of the queries and keys: sqrt(Q.shape[1]) = sqrt({d}) here"
    candidates = {f"you divided the scores by the square root of {' and '.join(names).rstrip(',')} ({value}); {fix}":
                  value ** 0.5
                  for value, names in widths.items()}
    candidates[f"you divided the scores by d ({d}) instead of its square root; {fix}"] = float(d)
    candidates[f"the scores were not scaled: divide the scores by sqrt(d) (here sqrt({d})) before the softmax"] = 1.0
    for message, divisor in candidates.items():
        if np.allclose(got, _scaled_by(Q, K, V, divisor)):
            return message
    return None


@question(QUESTIONS, "q1", "scaled dot-product attention", points=2)
def attention(fn):
    got = as_array(call(fn, X, X, X, None), "attention(X, X, X)")
    expected = ref.scaled_dot_product_attention(X, X, X)
    if got.shape != expected.shape:
        raise Fail(f"expected an output of shape {expected.shape}, got {got.shape}")
    if not np.allclose(got, expected):
        raise Fail(_wrong_divisor(got, X, X, X) or
                   f"the worked example gave {got.round(3).tolist()}, expected {expected.round(3).tolist()}: "
                   "softmax each row of Q K^T / sqrt(d), then multiply by V")
    rng = np.random.default_rng(5)
    # Without a mask, and with every width different (T_q 5, T_k 7, d 4, d_v 3), so that dividing by
    # the square root of the wrong width shows up here rather than as a mask problem below.
    Q, K, V = rng.normal(size=(5, 4)), rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    got = as_array(call(fn, Q, K, V, None), "attention(Q, K, V) with Q (5, 4), K (7, 4), V (7, 3)")
    if got.shape != (5, 3):
        raise Fail(f"with Q (5, 4), K (7, 4) and V (7, 3) the output should be (5, 3) = (T_q, d_v), got {got.shape}")
    if not np.allclose(got, ref.scaled_dot_product_attention(Q, K, V)):
        raise Fail(_wrong_divisor(got, Q, K, V) or "wrong on random Q (5, 4), K (7, 4), V (7, 3) without a mask: "
                   "softmax each row of Q K^T / sqrt(d), then multiply by V")
    Q, K, V = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    mask = ref.causal_mask(6)
    got = as_array(call(fn, Q, K, V, mask), "attention(Q, K, V, mask)")
    if got.shape != (6, 3):
        raise Fail(f"with V of width 3 the output should be (6, 3), got {got.shape}")
    if np.allclose(got, ref.scaled_dot_product_attention(Q, K, V)):
        raise Fail("the mask was ignored: set masked scores to -inf before the softmax")
    if not np.allclose(got, ref.scaled_dot_product_attention(Q, K, V, mask)):
        raise Fail("wrong with a causal mask: masked entries must get weight exactly 0 (score -inf), "
                   "and each row must still sum to 1")
    return "the worked example, random inputs and the causal mask"


@question(QUESTIONS, "q2", "a weight of the worked example", points=1)
def worked_weight(w):
    _, weights = ref.scaled_dot_product_attention(X, X, X, return_weights=True)
    w = as_number(w, "w")
    if abs(w - weights[2, 2]) > 1e-3:
        raise Fail(f"got {w:.3f}; take row 3 (token (1, 1)) of softmax(X X^T / sqrt(2)), its third entry")
    return (f"{weights[2, 2]:.3f}: with Q = K, token 3's score with itself (sqrt(2), its squared "
            "length over sqrt(2)) is the largest in its row")


@question(QUESTIONS, "q3", "the variance of unscaled scores", points=1)
def score_variance(v):
    v = as_number(v, "your answer")
    if abs(v - 1) < 0.2:
        raise Fail("1 is the variance after dividing by sqrt(d); without scaling each of the d products adds 1")
    if abs(v - 256) > 256 * 0.15:  # an estimate from a few thousand samples is fine
        raise Fail(f"got {v}; q.k sums d = 256 independent products, each of variance 1")
    return "d = 256: the variance grows with the width, hence the 1/sqrt(d)"


@question(QUESTIONS, "q4", "split and merge heads", points=2)
def heads(split, merge):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 12))
    parts = as_array(call(split, x, 3), "split_heads(x, 3)")
    if parts.shape != (3, 5, 4):
        raise Fail(f"split_heads of a (5, 12) array into 3 heads should be (3, 5, 4) = (nh, T, hs), got {parts.shape}")
    if not np.allclose(parts[1], x[:, 4:8]):
        raise Fail("head 1 should hold columns 4..7 of x (each head a contiguous slice of the width)")
    back = as_array(call(merge, parts), "merge_heads(parts)")
    if not np.allclose(back, x):
        raise Fail("merge_heads(split_heads(x)) should give x back: concatenate the heads along the width")
    return "(T, C) <-> (nh, T, hs), as GPT's view + transpose does"


@question(QUESTIONS, "q5", "the causal mask", points=2)
def causal(fn):
    for n in (1, 3, 7):
        got = np.asarray(call(fn, n))
        expected = ref.causal_mask(n)
        if got.shape != (n, n):
            raise Fail(f"causal_mask({n}) should be ({n}, {n}), got {got.shape}")
        if np.array_equal(got.astype(bool), expected.T) and n > 1:
            raise Fail("that is the transpose: row i is query i, which may see keys j <= i (lower triangle)")
        if not np.array_equal(got.astype(bool), expected):
            raise Fail(f"causal_mask({n}) should be True on and below the diagonal, False above")
    return "lower triangular: each token sees itself and its past"
