"""Long-context attention methods, each small enough to check by hand (chapter 8, "Stretching the window").

- ``causal_mask`` (from ``utils.attention``) / ``sliding_window_mask``: which keys each query may
  attend to. A sliding window of w keys (Longformer, Beltagy et al. 2020; Mistral 7B, Jiang et al.
  2023) makes attention cost O(n w) instead of O(n^2); information still travels further through
  stacked layers. Longformer's global tokens attend to everything and are attended by everything;
  in a decoder the causal rule still applies to them.
- ``linear_attention``: replace softmax's exp(q.k) by a kernel phi(q).phi(k) (Katharopoulos et al.,
  ICML 2020, with phi(x) = elu(x) + 1) and keep the normaliser:
  out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j)). By associativity
  (phi(Q) phi(K)^T) V == phi(Q) (phi(K)^T V), and the right-hand order never builds the n x n
  matrix: O(n d^2) instead of O(n^2 d). ``causal=True`` gives the running-sum (recurrent) form.
- ``interpolate_positions``: position interpolation (Chen et al., 2023) rescales positions by
  L_train / L_target so that a longer sequence reuses the position range the model was trained on.

Shapes: Q, K, V are (n, d) NumPy arrays for one head. Deliberately left out: learned sparse
patterns, multi-head batching, and the numerically careful kernels real implementations use.
Chapter 3's exercises also use these functions (context budgets).
"""

from __future__ import annotations

import numpy as np

from .attention import causal_mask
from .validation import check_bool, check_int

__all__ = ["causal_mask", "sliding_window_mask", "elu_feature_map", "linear_attention", "linear_attention_flops",
           "interpolate_positions"]


def _check_n(n, name="n"):
    check_int(n, name, minimum=1)


def sliding_window_mask(n: int, window: int, n_global: int = 0, *, global_positions=None,
                        causal: bool = True) -> np.ndarray:
    """(n, n) boolean mask, True where query i (row) may attend to key j (column). Defined in chapter 8.

    Local part: with ``causal=True`` (a decoder), query i sees keys j with i - window < j <= i (itself
    and the window - 1 keys before it); with ``causal=False`` (an encoder such as Longformer, which
    reads the whole text at once) it sees keys with |i - j| < window, on both sides.

    Global tokens (Longformer, Beltagy et al. 2020): ``global_positions`` (or ``n_global``, short for
    the first n_global positions) are positions whose row and column are added to the local band, so
    a global token attends to every token and every token attends to it. With ``causal=True`` the
    causal rule still applies on top: a global token at g sees every key j <= g and is seen by every
    query i >= g, never a later key or an earlier query.
    Example: sliding_window_mask(4, 2) -> each row has at most 2 True, on and just left of the diagonal.
    """
    _check_n(n)
    _check_n(window, "window")
    check_int(n_global, "n_global", minimum=0, maximum=n)
    check_bool(causal, "causal")
    if global_positions is None:
        global_positions = range(n_global)
    elif n_global:
        raise ValueError(f"pass n_global or global_positions, not both (got n_global={n_global!r})")
    if isinstance(global_positions, (str, bytes)) or not hasattr(global_positions, "__iter__"):
        raise ValueError(f"global_positions must be a list of integer positions in [0, {n}), "
                         f"got {global_positions!r}")
    is_global = np.zeros(n, dtype=bool)
    for k, g in enumerate(global_positions):
        is_global[check_int(g, f"global_positions[{k}]", minimum=0, maximum=n - 1)] = True
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    local = np.abs(i - j) < window
    mask = local | is_global[:, None] | is_global[None, :]
    return mask & (j <= i) if causal else mask


def elu_feature_map(x: np.ndarray) -> np.ndarray:
    """phi(x) = elu(x) + 1: x + 1 for x > 0, exp(x) otherwise; positive everywhere, so the
    normaliser of ``linear_attention`` is never 0 (Katharopoulos et al., 2020). Defined in chapter 8.

    elu, the exponential linear unit (Clevert et al., ICLR 2016), is x for x > 0 and exp(x) - 1 otherwise.
    """
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0)))


def linear_attention(Q, K, V, feature_map=elu_feature_map, order: str = "linear",
                     causal: bool = False) -> np.ndarray:
    """Linear attention (Katharopoulos et al., ICML 2020, section 3.2), normaliser included:

        out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j))

    with phi(x) = elu(x) + 1 by default; j runs over all n keys, or over j <= i with ``causal=True``.
    ``order="quadratic"`` builds the (n, n) matrix phi(Q) phi(K)^T (masked when causal), multiplies
    it by V and divides each row by its sum; ``order="linear"`` never does: it computes the
    (d, d_v) summary phi(K)^T V and the (d,) sum of phi(k_j) once (non-causal), or as running sums
    S_i = S_{i-1} + phi(k_i) v_i^T and z_i = z_{i-1} + phi(k_i) over the tokens so far (causal),
    which is what lets a causal model generate with a fixed-size state, like a recurrent network.
    Both orders give the same numbers. Defined in chapter 8.
    """
    if order not in ("linear", "quadratic"):
        raise ValueError(f"order must be 'linear' or 'quadratic', got {order!r}")
    check_bool(causal, "causal")
    Q, K, V = (np.asarray(a, dtype=float) for a in (Q, K, V))
    if Q.ndim != 2 or K.shape != Q.shape or V.ndim != 2 or V.shape[0] != K.shape[0]:
        raise ValueError(f"expected Q, K of shape (n, d) and V of shape (n, d_v), got {Q.shape}, {K.shape}, {V.shape}")
    fq, fk = feature_map(Q), feature_map(K)
    if order == "quadratic":
        weights = fq @ fk.T  # (n, n)
        if causal:
            weights = np.tril(weights)
        return (weights @ V) / weights.sum(axis=1, keepdims=True)
    if causal:  # running sums over the tokens so far: the state has a fixed size (d, d_v) + (d,)
        S = np.cumsum(fk[:, :, None] * V[:, None, :], axis=0)  # (n, d, d_v): S_i for every i
        z = np.cumsum(fk, axis=0)  # (n, d)
        return np.einsum("nd,nde->ne", fq, S) / np.einsum("nd,nd->n", fq, z)[:, None]
    kv = fk.T @ V  # (d, d_v): a summary of all keys and values, independent of n
    normaliser = fq @ fk.sum(axis=0)  # (n,)
    return (fq @ kv) / normaliser[:, None]


def linear_attention_flops(n: int, d: int, d_v: int, order: str) -> int:
    """Multiply-add FLOPs (2 per term) of non-causal ``linear_attention`` for one head. Defined in chapter 8.

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
    [0, L_train). Shorter sequences are left alone. Defined in chapter 8.
    """
    _check_n(n_tokens, "n_tokens")
    _check_n(train_length, "train_length")
    positions = np.arange(n_tokens, dtype=float)
    return positions * (train_length / n_tokens) if n_tokens > train_length else positions
