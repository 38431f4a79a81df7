"""Long-context methods, each small enough to check by hand (chapter 3).

- ``causal_mask`` (from ``utils.attention``) / ``sliding_window_mask``: which keys each query may attend to. A sliding window
  of w keys (Longformer, Beltagy et al. 2020; Mistral 7B, Jiang et al. 2023) makes attention cost
  O(n w) instead of O(n^2); information still travels further through stacked layers.
- ``linear_attention``: replace softmax(q.k) by a kernel phi(q).phi(k) (Katharopoulos et al.,
  ICML 2020, with phi(x) = elu(x) + 1). Then (phi(Q) phi(K)^T) V == phi(Q) (phi(K)^T V) by
  associativity, and the right-hand order never builds the n x n matrix: O(n d^2) instead of O(n^2 d).
- ``interpolate_positions``: position interpolation (Chen et al., 2023) rescales positions by
  L_train / L_target so that a longer sequence reuses the position range the model was trained on.

Shapes: Q, K, V are (n, d) NumPy arrays for one head. Deliberately left out: the causal form of
linear attention (a running sum over keys) and learned sparse patterns.
"""

from __future__ import annotations

import numpy as np

from .attention import causal_mask
from .validation import check_int

__all__ = ["causal_mask", "sliding_window_mask", "elu_feature_map", "linear_attention", "linear_attention_flops",
           "interpolate_positions"]


def _check_n(n, name="n"):
    check_int(n, name, minimum=1)


def sliding_window_mask(n: int, window: int, n_global: int = 0) -> np.ndarray:
    """(n, n) boolean: query i sees keys j with i - window < j <= i (itself and window - 1 before).

    ``n_global`` > 0 adds Longformer's global tokens: the first n_global positions are seen by every
    later query and see every earlier key, so a few tokens carry information across the whole text.
    Example: sliding_window_mask(4, 2) -> each row has at most 2 True, on and just left of the diagonal.
    Defined in chapter 3.
    """
    _check_n(n)
    _check_n(window, "window")
    if not isinstance(n_global, (int, np.integer)) or n_global < 0:
        raise ValueError(f"n_global must be an integer >= 0, got {n_global!r}")
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    local = (j <= i) & (i - j < window)
    is_global = (j < n_global) | (i < n_global)
    return local | (is_global & (j <= i))


def elu_feature_map(x: np.ndarray) -> np.ndarray:
    """phi(x) = elu(x) + 1, positive everywhere (Katharopoulos et al., 2020)."""
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0)))


def linear_attention(Q, K, V, feature_map=elu_feature_map, order: str = "linear") -> np.ndarray:
    """Non-causal linear attention: row i is sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j).

    ``order="quadratic"`` computes (phi(Q) phi(K)^T) V, building the (n, n) matrix;
    ``order="linear"`` computes phi(Q) (phi(K)^T V), which never does. Same numbers. Defined in chapter 3.
    """
    if order not in ("linear", "quadratic"):
        raise ValueError(f"order must be 'linear' or 'quadratic', got {order!r}")
    Q, K, V = (np.asarray(a, dtype=float) for a in (Q, K, V))
    if Q.ndim != 2 or K.shape != Q.shape or V.ndim != 2 or V.shape[0] != K.shape[0]:
        raise ValueError(f"expected Q, K of shape (n, d) and V of shape (n, d_v), got {Q.shape}, {K.shape}, {V.shape}")
    fq, fk = feature_map(Q), feature_map(K)
    if order == "quadratic":
        weights = fq @ fk.T  # (n, n)
        return (weights @ V) / weights.sum(axis=1, keepdims=True)
    kv = fk.T @ V  # (d, d_v): a summary of all keys and values, independent of n
    normaliser = fq @ fk.sum(axis=0)  # (n,)
    return (fq @ kv) / normaliser[:, None]


def linear_attention_flops(n: int, d: int, d_v: int, order: str) -> int:
    """Multiply-add FLOPs (2 per term) of ``linear_attention`` for one head, by hand. Defined in chapter 3.

    quadratic: phi(Q) phi(K)^T is 2 n^2 d, times V is 2 n^2 d_v, plus n^2 for the row sums;
    linear:    phi(K)^T V is 2 n d d_v, phi(Q) times that is 2 n d d_v, plus 2 n d for the normaliser.
    """
    _check_n(n)
    if order == "quadratic":
        return 2 * n * n * d + 2 * n * n * d_v + n * n
    if order == "linear":
        return 4 * n * d * d_v + 2 * n * d
    raise ValueError(f"order must be 'linear' or 'quadratic', got {order!r}")


def interpolate_positions(n_tokens: int, train_length: int) -> np.ndarray:
    """Positions 0..n_tokens-1, scaled by train_length / n_tokens when the sequence is longer.

    Chen et al. (2023): position m becomes m * L_train / L_target, so every position lies in
    [0, L_train). Shorter sequences are left alone. Defined in chapter 3.
    """
    _check_n(n_tokens, "n_tokens")
    _check_n(train_length, "train_length")
    positions = np.arange(n_tokens, dtype=float)
    return positions * (train_length / n_tokens) if n_tokens > train_length else positions
