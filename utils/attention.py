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

from .validation import ArgumentTypeError, check_int

__all__ = ["causal_mask", "scaled_dot_product_attention", "multi_head_attention"]


def causal_mask(n: int) -> np.ndarray:
    """(n, n) boolean: query i may see keys j <= i. Defined in chapter 5 (used from chapter 3 on).

    Example: causal_mask(3) -> [[T, F, F], [T, T, F], [T, T, T]]
    """
    n = check_int(n, "n", minimum=1)
    return np.tril(np.ones((n, n), dtype=bool))


def _mask_scores(scores: np.ndarray, mask) -> np.ndarray:
    """Apply an attention mask to the (T_q, T_k) scores; both of PyTorch's conventions, told apart by dtype.

    - boolean: True = the query may attend to the key (``torch.nn.functional.scaled_dot_product_attention``'s
      boolean ``attn_mask``); False entries get weight 0.
    - float: added to the scores (PyTorch's additive ``attn_mask``): 0 keeps, -inf removes, a
      negative number penalises. Positive values are refused: a float mask of 1s and 0s is almost
      always a boolean mask in disguise, and adding it would silently keep every key.
    Integer masks are refused for the same reason: say which convention you mean.
    """
    mask = np.asarray(mask)
    if mask.shape != scores.shape:
        raise ValueError(f"mask must have shape {scores.shape} (T_q, T_k), got {mask.shape}")
    if mask.dtype == bool:
        if not mask.any(axis=1).all():
            raise ValueError("mask: every query must be allowed to see at least one key (a mask row is all False)")
        return np.where(mask, scores, -np.inf)
    if np.issubdtype(mask.dtype, np.floating):
        if np.isnan(mask).any() or (mask > 0).any():
            raise ValueError("mask: a float mask is added to the scores (0 keeps a key, -inf removes it, as in "
                             "PyTorch), so it must hold values <= 0 and no NaN, got "
                             f"{'NaN' if np.isnan(mask).any() else f'a maximum of {mask.max()}'}; for a keep/drop "
                             "mask of 1s and 0s pass booleans (mask.astype(bool))")
        if np.isneginf(mask).all(axis=1).any():
            raise ValueError("mask: every query must be allowed to see at least one key (a mask row is all -inf)")
        return scores + mask
    raise ValueError(f"mask must be boolean (True = may attend) or float (added to the scores: 0 or -inf), "
                     f"got dtype {mask.dtype}")


def scaled_dot_product_attention(Q, K, V, mask=None, return_weights: bool = False):
    """softmax(Q K^T / sqrt(d) [+ mask]) V. Defined in chapter 5 (used from chapter 4 on).

    Q (T_q, d), K (T_k, d), V (T_k, d_v); mask (T_q, T_k) or None, in either of PyTorch's
    conventions: boolean (True = may attend, as ``causal_mask`` returns) or float, added to the
    scores (0 keeps, -inf removes). See ``_mask_scores`` for what is refused and why.
    Example: with Q = K = V = [[1, 0], [0, 1], [1, 1]] the first row of weights is
    softmax([1, 0, 1] / sqrt(2)) = [0.401, 0.198, 0.401] (rounded).
    """
    Q, K, V = (_as_matrix(a, name) for a, name in ((Q, "Q"), (K, "K"), (V, "V")))
    if Q.shape[1] != K.shape[1] or K.shape[0] != V.shape[0]:
        raise ValueError(f"expected Q (T_q, d), K (T_k, d), V (T_k, d_v), got {Q.shape}, {K.shape}, {V.shape}")
    scores = Q @ K.T / np.sqrt(Q.shape[1])  # (T_q, T_k)
    if mask is not None:
        scores = _mask_scores(scores, mask)
    scores = scores - scores.max(axis=1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)
    out = weights @ V  # (T_q, d_v)
    return (out, weights) if return_weights else out


def _as_matrix(a, name: str) -> np.ndarray:
    """a as a finite float (T, d) array with T, d >= 1, or a ValueError naming it."""
    try:
        x = np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a 2-D array of numbers, got {type(a).__name__} {a!r:.40}") from None
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array (T, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(x)).sum())} NaN or inf value(s)")
    return x


def multi_head_attention(x, W_qkv, b_qkv, W_o, b_o, n_head: int, causal: bool = True):
    """Multi-head self-attention of x (T, C) with GPT-2's layout. Defined in chapter 5.

    W_qkv (C, 3C) and b_qkv (3C,) compute q, k, v at once; W_o (C, C), b_o (C,) mix the heads.
    """
    x = _as_matrix(x, "x")
    T, C = x.shape
    n_head = check_int(n_head, "n_head", minimum=1)
    if C % n_head:
        raise ValueError(f"the width C ({C}) must be divisible by n_head ({n_head})")
    hs = C // n_head
    q, k, v = np.split(x @ W_qkv + b_qkv, 3, axis=1)  # each (T, C)
    mask = causal_mask(T) if causal else None
    heads = [scaled_dot_product_attention(q[:, h * hs:(h + 1) * hs], k[:, h * hs:(h + 1) * hs],
                                          v[:, h * hs:(h + 1) * hs], mask) for h in range(n_head)]
    return np.concatenate(heads, axis=1) @ W_o + b_o  # (T, C)
