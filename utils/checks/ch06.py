"""Checks for the chapter 6 exercises: the FFN as memory.

Usage in the notebook::

    from utils.checks import ch06 as check
    check.ffn_memory(ffn_memory)
"""

from __future__ import annotations

import numpy as np

from .. import ffn_memory as ref
from . import Fail, call, copy_arg, question

QUESTIONS: dict = {}
_rng = np.random.default_rng(8)
C, H = 6, 24
W1, b1 = _rng.normal(size=(C, H)), _rng.normal(size=H) * 0.1
W2, b2 = _rng.normal(size=(H, C)), _rng.normal(size=C) * 0.1
XS = _rng.normal(size=(10, C))


@question(QUESTIONS, "q1", "the FFN as keys and values", points=2)
def ffn_memory(fn):
    got = call(fn, XS[0], W1, b1, W2, b2)
    if not isinstance(got, tuple) or len(got) != 2:
        raise Fail("return a pair (activations, output)")
    a, out = (np.asarray(v, dtype=float) for v in got)
    a_ref, out_ref = ref.ffn_as_memory(XS[0], W1, b1, W2, b2)
    if a.shape != (H,):
        raise Fail(f"activations should have one entry per hidden unit, shape ({H},), got {a.shape}")
    if np.allclose(a, XS[0] @ W1 + b1):
        raise Fail("apply the GELU to x W1 + b1: the activation is f(x . k_i + b_i)")
    if not np.allclose(a, a_ref, atol=1e-6):
        raise Fail("activations differ: use the tanh form of GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))")
    if np.allclose(out, out_ref - b2):
        raise Fail("add the bias b2 to the sum of a_i * v_i")
    if not np.allclose(out, out_ref, atol=1e-6):
        raise Fail("output differs: it is sum_i a_i * W2[i] + b2")
    return "sum_i a_i v_i + b2 equals the FFN"


@question(QUESTIONS, "q2", "the units that respond to one input", points=2)
def top_units(fn):
    a, _ = ref.ffn_as_memory(XS, W1, b1, W2, b2)
    for s, k in [(0, 3), (4, 5)]:
        got = np.asarray(call(fn, a[s], np.delete(a, s, axis=0), k))
        expected = ref.top_units(a[s], np.delete(a, s, axis=0), k)
        if len(got) != k:
            raise Fail(f"return k = {k} unit indices, got {len(got)}")
        if set(got.tolist()) == set(np.argsort(-a[s])[:k].tolist()) and set(got.tolist()) != set(expected.tolist()):
            raise Fail("those are the units with the largest activation; subtract each unit's mean activation over "
                       "the other inputs first, so units that fire for everything do not count")
        if set(got.tolist()) != set(expected.tolist()):
            raise Fail("rank units by (activation for this input - mean activation for the others), largest first")
    return "selectivity = own activation - mean of the others"


@question(QUESTIONS, "q3", "edit the values, move one output", points=2)
def edit(fn):
    a, out = ref.ffn_as_memory(XS, W1, b1, W2, b2)
    units = ref.top_units(a[2], np.delete(a, 2, axis=0), 4)
    delta = _rng.normal(size=C)
    W2_copy = W2.copy()
    # W2_copy is passed as it is, to see whether the learner's code edits it in place; the rest are copies.
    new = np.asarray(fn(W2_copy, copy_arg(units), copy_arg(a[2]), copy_arg(delta)), dtype=float)
    if not np.array_equal(W2_copy, W2):
        raise Fail("your function changed W2 in place; return an edited copy")
    changed = np.flatnonzero(np.any(new != W2, axis=1))
    if not set(changed.tolist()) <= set(units.tolist()):
        raise Fail(f"rows {sorted(set(changed.tolist()) - set(units.tolist()))} changed; edit only the chosen units")
    moved = ref.ffn(XS[2], W1, b1, new, b2) - out[2]
    if not np.allclose(moved, delta, atol=1e-6):
        raise Fail("the input's output should move by exactly delta: W2[i] += a_i * delta / sum_j a_j^2 "
                   "over the chosen units")
    smallest = np.linalg.norm(ref.edit_values(W2, units, a[2], delta) - W2)
    if np.linalg.norm(new - W2) > smallest * (1 + 1e-6):
        raise Fail(f"the output moves by delta, but the change to W2 (size {np.linalg.norm(new - W2):.2f}) is not the "
                   f"smallest possible ({smallest:.2f}): spread it over the units in proportion to their activations")
    return "only the chosen value rows change, and the output moves by exactly delta"
