"""Checks for the chapter 4 exercises: embeddings and positions.

Usage in the notebook::

    from utils.checks import ch04 as check
    check.sinusoidal_encoding(sinusoidal_encoding)
"""

from __future__ import annotations

import numpy as np

from .. import positions as ref
from . import Fail, as_array, as_number, call, question

QUESTIONS: dict = {}


@question(QUESTIONS, "q1", "sinusoidal encoding", points=2)
def sinusoidal_encoding(fn):
    for n, d in [(1, 4), (50, 16), (7, 64)]:
        got = as_array(call(fn, n, d), f"sinusoidal_encoding({n}, {d})")
        expected = ref.sinusoidal_encoding(n, d)
        if got.shape != expected.shape:
            raise Fail(f"sinusoidal_encoding({n}, {d}) should have shape {expected.shape}, got {got.shape}")
        if np.allclose(got, expected[:, ::-1]) or np.allclose(got[:, 0::2], expected[:, 1::2]):
            raise Fail("sin and cos are swapped: even dimensions (0, 2, ...) hold sin, odd ones cos")
        if not np.allclose(got, expected):
            if n > 1 and np.allclose(got[1, 0::2], np.sin(1 / 10000 ** (np.arange(d // 2) / d))):
                raise Fail("the exponent is 2i/d for pair i (dimensions 2i and 2i+1), not i/d")
            raise Fail(f"wrong values for ({n}, {d}): PE(pos, 2i) = sin(pos / 10000^(2i/d)), "
                       "PE(pos, 2i+1) = cos(pos / 10000^(2i/d))")
    return "sin in even, cos in odd dimensions, frequencies 10000^(-2i/d)"


@question(QUESTIONS, "q2", "a shift is a rotation", points=2)
def shift_matrix(fn):
    pe = ref.sinusoidal_encoding(40, 16)
    for k in (1, 5, 12):
        M = as_array(call(fn, k, 16), f"shift_matrix({k}, 16)")
        if M.shape != (16, 16):
            raise Fail(f"shift_matrix({k}, 16) should be (16, 16), got {M.shape}")
        if np.allclose(pe[k:], pe[:-k] @ M):
            raise Fail("your matrix works from the right (row vectors); the question asks for M @ PE(pos): transpose it")
        if not np.allclose(pe[k:], pe[:-k] @ M.T):
            raise Fail(f"PE(pos + {k}) != M_{k} @ PE(pos): each 2 x 2 block rotates (sin a, cos a) by k * w_i; "
                       "use sin(a + b) = sin a cos b + cos a sin b and cos(a + b) = cos a cos b - sin a sin b")
    return "PE(pos + k) = M_k PE(pos) for every pos"


@question(QUESTIONS, "q3", "rotary embedding", points=2)
def apply_rope(fn):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 8))
    pos = np.arange(6)
    got = as_array(call(fn, x, pos), "apply_rope(x, positions)")
    if got.shape != x.shape:
        raise Fail(f"apply_rope should keep the shape {x.shape}, got {got.shape}")
    if not np.allclose(np.linalg.norm(got, axis=1), np.linalg.norm(x, axis=1)):
        raise Fail("a rotation keeps every vector's length, yours does not: check the signs "
                   "(x1 cos - x2 sin, x1 sin + x2 cos)")
    if not np.allclose(got, ref.apply_rope(x, pos)):
        half = x.shape[1] // 2
        interleave = np.empty_like(x)
        interleave[:, 0::2], interleave[:, 1::2] = x[:, :half], x[:, half:]
        split = ref.apply_rope(interleave, pos)
        split_half = np.concatenate([split[:, 0::2], split[:, 1::2]], axis=1)
        if np.allclose(got, split_half):
            raise Fail("you paired dimension i with i + d/2 (the layout of Llama's code); this course pairs "
                       "(2i, 2i+1), as the RoPE paper writes it: use x[:, 0::2] and x[:, 1::2]")
        raise Fail("lengths are kept but the angles are wrong: pair i of a vector at position m turns by "
                   "m * 10000^(-2i/d)")
    q, k = rng.normal(size=(2, 8))
    s = lambda m, n: (as_array(call(fn, q[None], [m]), "apply_rope") @ as_array(call(fn, k[None], [n]), "apply_rope").T).item()
    if not np.isclose(s(9, 4), s(109, 104)):
        raise Fail("scores should depend only on the offset m - n")
    return "q.k depends only on the offset"


@question(QUESTIONS, "q4", "GPT-2's position table", points=1)
def position_parameters(n):
    if n == 1024:
        raise Fail("that is the number of positions; each has a vector of 768 numbers")
    if n != 1024 * 768:
        raise Fail(f"got {n}; the table has one row of n_embd = 768 numbers per position, 1,024 positions")
    return "1,024 x 768 = 786,432 parameters"


@question(QUESTIONS, "q5", "dot product of two encodings", points=1)
def encoding_dot(value):
    expected = float(ref.sinusoidal_encoding(20, 64)[10] @ ref.sinusoidal_encoding(20, 64)[13])
    by_offset = float(np.cos(3 * ref.frequencies(64)).sum())
    value = as_number(value, "your answer")
    if not np.isclose(value, expected, atol=1e-3):
        raise Fail(f"got {value:.4f}; compute PE(10) . PE(13) with d = 64 (or sum_i cos(3 w_i))")
    assert np.isclose(expected, by_offset)
    return f"{expected:.4f} = sum over pairs of cos(3 w_i): it depends on the offset 3 only"
