"""Where a token is: sinusoidal encodings and rotary embeddings, in NumPy (chapter 4).

- ``sinusoidal_encoding`` (Vaswani et al., NeurIPS 2017):
  PE(pos, 2i) = sin(pos / base^(2i/d)),  PE(pos, 2i+1) = cos(pos / base^(2i/d)), base = 10000.
  Each pair of dimensions is a point on a circle turning at its own frequency, so moving k
  positions is a fixed rotation of every pair: PE(pos + k) = M_k PE(pos) with M_k independent of pos
  (``shift_matrix``).
- ``apply_rope`` (Su et al., 2021, RoFormer): rotate each pair of a query or key vector by
  pos * base^(-2i/d). A rotation by m of q and by n of k leaves q.k depending on m - n only.

The PyTorch model (utils.model) uses the same pairing (dimensions 2i and 2i+1) and frequencies;
the tests check that both give the same numbers. Deliberately left out: ALiBi, NTK and YaRN
scaling, and 2-D positions for images.
"""

from __future__ import annotations

import numpy as np

from .validation import check_int, check_real

__all__ = ["frequencies", "sinusoidal_encoding", "shift_matrix", "apply_rope"]


def _check_even(d: int, name: str = "d_model") -> None:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 2 or d % 2:
        raise ValueError(f"{name} must be an even integer >= 2 (dimensions come in pairs), got {d!r}")


def frequencies(d: int, base: float = 10000.0) -> np.ndarray:
    """The d/2 angular frequencies base^(-2i/d), i = 0 .. d/2 - 1, fastest first. Defined in chapter 4."""
    _check_even(d)
    base = check_real(base, "base", 0.0, low_open=True)  # base <= 0 gives NaN or inf frequencies
    return base ** (-np.arange(0, d, 2) / d)


def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """(n_positions, d_model): sin in even dimensions, cos in odd ones. Defined in chapter 4.

    Example: sinusoidal_encoding(1, 4) -> [[0, 1, 0, 1]] (position 0: sin 0 = 0, cos 0 = 1)
    """
    n_positions = check_int(n_positions, "n_positions", minimum=1)
    angles = np.arange(n_positions)[:, None] * frequencies(d_model, base)[None, :]  # (n, d/2)
    pe = np.empty((n_positions, d_model))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angles), np.cos(angles)
    return pe


def shift_matrix(k: float, d_model: int, base: float = 10000.0) -> np.ndarray:
    """The (d, d) matrix M_k with PE(pos + k) = M_k @ PE(pos) for every pos. Defined in chapter 4.

    Block diagonal: for the pair (sin a, cos a) at frequency w, sin(a + kw) = sin a cos kw + cos a sin kw
    and cos(a + kw) = cos a cos kw - sin a sin kw, a rotation by kw that does not involve a.
    """
    M = np.zeros((d_model, d_model))
    for i, w in enumerate(frequencies(d_model, base)):
        c, s = np.cos(k * w), np.sin(k * w)
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    return M


def apply_rope(x, positions, base: float = 10000.0) -> np.ndarray:
    """Rotate each pair (x[..., 2i], x[..., 2i+1]) of x (T, d) by positions[t] * base^(-2i/d). Defined in chapter 4."""
    x = np.asarray(x, dtype=float)
    _check_even(x.shape[-1], "the last dimension of x")
    positions = np.asarray(positions, dtype=float)
    if not np.isfinite(positions).all():
        raise ValueError(f"positions must be finite numbers, got {positions.tolist()[:8]}")
    if positions.shape != x.shape[:-1]:
        raise ValueError(f"positions must have shape {x.shape[:-1]} (one per vector), got {positions.shape}")
    angles = positions[..., None] * frequencies(x.shape[-1], base)  # (T, d/2)
    cos, sin = np.cos(angles), np.sin(angles)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = x1 * cos - x2 * sin, x1 * sin + x2 * cos
    return out
