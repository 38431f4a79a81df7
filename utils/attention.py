"""Attention in NumPy: the reference the PyTorch model is tested against (chapters 4 and 5).

    scores  = Q K^T / sqrt(d)          how well each query matches each key   (T_q, T_k)
    weights = softmax(scores, rows)    normalised relevance; masked entries get weight 0
    output  = weights V                a weighted mix of the values            (T_q, d_v)

Multi-head attention splits the model width C into nh heads of size hs = C / nh, attends in each
head separately, and concatenates the results (Vaswani et al., NeurIPS 2017). The tests check
this module against ``utils.model.CausalSelfAttention`` and ``torch.nn.functional.scaled_dot_product_attention``.

Deliberately left out: dropout, batching (one sequence at a time), and KV caching (utils.model).
"""

from __future__ import annotations

import numpy as np

__all__ = ["causal_mask", "scaled_dot_product_attention", "multi_head_attention"]


def causal_mask(n: int) -> np.ndarray:
    """(n, n) boolean: query i may see keys j <= i. Defined in chapter 5 (used from chapter 3 on).

    Example: causal_mask(3) -> [[T, F, F], [T, T, F], [T, T, T]]
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return np.tril(np.ones((n, n), dtype=bool))


def scaled_dot_product_attention(Q, K, V, mask=None, return_weights: bool = False):
    """softmax(Q K^T / sqrt(d)) V, with mask == False entries excluded. Defined in chapter 5 (used from chapter 4 on).

    Q (T_q, d), K (T_k, d), V (T_k, d_v); mask (T_q, T_k) boolean or None.
    Example: with Q = K = V = [[1, 0], [0, 1], [1, 1]] the first row of weights is
    softmax([1, 0, 1] / sqrt(2)) = [0.401, 0.198, 0.401] (rounded).
    """
    Q, K, V = (np.asarray(a, dtype=float) for a in (Q, K, V))
    if Q.ndim != 2 or K.ndim != 2 or V.ndim != 2 or Q.shape[1] != K.shape[1] or K.shape[0] != V.shape[0]:
        raise ValueError(f"expected Q (T_q, d), K (T_k, d), V (T_k, d_v), got {Q.shape}, {K.shape}, {V.shape}")
    scores = Q @ K.T / np.sqrt(Q.shape[1])  # (T_q, T_k)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != scores.shape:
            raise ValueError(f"mask must have shape {scores.shape}, got {mask.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("every query must be allowed to see at least one key (a mask row is all False)")
        scores = np.where(mask, scores, -np.inf)
    scores = scores - scores.max(axis=1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)
    out = weights @ V  # (T_q, d_v)
    return (out, weights) if return_weights else out


def multi_head_attention(x, W_qkv, b_qkv, W_o, b_o, n_head: int, causal: bool = True):
    """Multi-head self-attention of x (T, C) with GPT-2's layout. Defined in chapter 5.

    W_qkv (C, 3C) and b_qkv (3C,) compute q, k, v at once; W_o (C, C), b_o (C,) mix the heads.
    """
    x = np.asarray(x, dtype=float)
    T, C = x.shape
    if C % n_head:
        raise ValueError(f"the width C ({C}) must be divisible by n_head ({n_head})")
    hs = C // n_head
    q, k, v = np.split(x @ W_qkv + b_qkv, 3, axis=1)  # each (T, C)
    mask = causal_mask(T) if causal else None
    heads = [scaled_dot_product_attention(q[:, h * hs:(h + 1) * hs], k[:, h * hs:(h + 1) * hs],
                                          v[:, h * hs:(h + 1) * hs], mask) for h in range(n_head)]
    return np.concatenate(heads, axis=1) @ W_o + b_o  # (T, C)
