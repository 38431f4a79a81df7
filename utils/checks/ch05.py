"""Checks for the chapter 5 exercises: attention.

Usage in the notebook::

    from utils.checks import ch05 as check
    check.attention(attention)
"""

from __future__ import annotations

import numpy as np

from .. import attention as ref
from . import Fail, as_array, question

QUESTIONS: dict = {}
X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


@question(QUESTIONS, "q1", "scaled dot-product attention", points=2)
def attention(fn):
    got = as_array(fn(X, X, X, None), "attention(X, X, X)")
    expected = ref.scaled_dot_product_attention(X, X, X)
    if got.shape != expected.shape:
        raise Fail(f"expected an output of shape {expected.shape}, got {got.shape}")
    unscaled = ref.scaled_dot_product_attention(X * 2**0.25, X * 2**0.25, X)  # scores not divided by sqrt(d)
    if np.allclose(got, unscaled):
        raise Fail("divide the scores by sqrt(d) (here sqrt(2)) before the softmax")
    if not np.allclose(got, expected):
        raise Fail(f"the worked example gave {got.round(3).tolist()}, expected {expected.round(3).tolist()}: "
                   "softmax each row of Q K^T / sqrt(d), then multiply by V")
    rng = np.random.default_rng(5)
    Q, K, V = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    mask = ref.causal_mask(6)
    got = as_array(fn(Q, K, V, mask), "attention(Q, K, V, mask)")
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
    if abs(float(w) - weights[2, 2]) > 1e-3:
        raise Fail(f"got {float(w):.3f}; take row 3 (token (1, 1)) of softmax(X X^T / sqrt(2)), its third entry")
    return f"{weights[2, 2]:.3f}: token 3 matches itself best (score sqrt(2))"


@question(QUESTIONS, "q3", "the variance of unscaled scores", points=1)
def score_variance(v):
    if abs(float(v) - 1) < 0.2:
        raise Fail("1 is the variance after dividing by sqrt(d); without scaling each of the d products adds 1")
    if abs(float(v) - 256) > 256 * 0.15:  # an estimate from a few thousand samples is fine
        raise Fail(f"got {v}; q.k sums d = 256 independent products, each of variance 1")
    return "d = 256: the variance grows with the width, hence the 1/sqrt(d)"


@question(QUESTIONS, "q4", "split and merge heads", points=2)
def heads(split, merge):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 12))
    parts = as_array(split(x, 3), "split_heads(x, 3)")
    if parts.shape != (3, 5, 4):
        raise Fail(f"split_heads of a (5, 12) array into 3 heads should be (3, 5, 4) = (nh, T, hs), got {parts.shape}")
    if not np.allclose(parts[1], x[:, 4:8]):
        raise Fail("head 1 should hold columns 4..7 of x (each head a contiguous slice of the width)")
    back = as_array(merge(parts), "merge_heads(parts)")
    if not np.allclose(back, x):
        raise Fail("merge_heads(split_heads(x)) should give x back: concatenate the heads along the width")
    return "(T, C) <-> (nh, T, hs), as GPT's view + transpose does"


@question(QUESTIONS, "q5", "the causal mask", points=2)
def causal(fn):
    for n in (1, 3, 7):
        got = np.asarray(fn(n))
        expected = ref.causal_mask(n)
        if got.shape != (n, n):
            raise Fail(f"causal_mask({n}) should be ({n}, {n}), got {got.shape}")
        if np.array_equal(got.astype(bool), expected.T) and n > 1:
            raise Fail("that is the transpose: row i is query i, which may see keys j <= i (lower triangle)")
        if not np.array_equal(got.astype(bool), expected):
            raise Fail(f"causal_mask({n}) should be True on and below the diagonal, False above")
    return "lower triangular: each token sees itself and its past"
