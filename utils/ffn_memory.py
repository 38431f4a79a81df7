"""The feed-forward network as a key-value memory (chapter 6).

    FFN(x) = f(x W1 + b1) W2 + b2,   f = GELU,   W1 (C, 4C), W2 (4C, C)

Geva et al. (EMNLP 2021) read this as a memory: column i of W1 is a *key* that matches a pattern in
the input, the activation a_i = f(x . k_i + b1_i) says how strongly it matched, and row i of W2 is
a *value* added to the output with that weight: FFN(x) = sum_i a_i v_i + b2.

This module holds the NumPy pieces of the chapter's lab: the forward pass written both ways,
finding the hidden units that respond to one input more than to others, and editing a stored
association by changing value vectors only. Deliberately left out: locating facts in a trained
language model (ROME, Meng et al. 2022, does that with causal tracing) and editing keys.
"""

from __future__ import annotations

import numpy as np

from .validation import check_int

__all__ = ["gelu", "ffn", "ffn_as_memory", "top_units", "edit_values"]


def gelu(x):
    """GELU, tanh approximation (as GPT-2 and torch's approximate="tanh"). Defined in chapter 6."""
    x = np.asarray(x, dtype=float)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def ffn(x, W1, b1, W2, b2):
    """f(x W1 + b1) W2 + b2 for x (..., C). Defined in chapter 6."""
    return gelu(np.asarray(x, dtype=float) @ W1 + b1) @ W2 + b2


def ffn_as_memory(x, W1, b1, W2, b2):
    """The same output as a sum of value vectors: returns (activations a (..., 4C), output). Defined in chapter 6."""
    a = gelu(np.asarray(x, dtype=float) @ W1 + b1)  # how strongly each key matches
    out = np.einsum("...i,ic->...c", a, W2) + b2  # sum_i a_i * value_i
    return a, out


def top_units(a_subject, a_others, k: int) -> np.ndarray:
    """Indices of the k hidden units that fire most for one input relative to the average of others.

    a_subject (H,), a_others (N, H). Defined in chapter 6.
    """
    k = check_int(k, "k", minimum=1, maximum=len(a_subject))
    selectivity = np.asarray(a_subject) - np.asarray(a_others).mean(axis=0)
    return np.argsort(-selectivity)[:k]


def edit_values(W2, units, a_subject, delta) -> np.ndarray:
    """Change only the value rows ``units`` so that the subject's output moves by exactly ``delta``.

    The smallest such change (least squares): W2[i] += a_i * delta / sum_j a_j^2 over the chosen
    units. Inputs that barely activate those units barely move. Returns a new W2. Defined in chapter 6.
    """
    units = np.asarray(units)
    a = np.asarray(a_subject, dtype=float)[units]
    norm = float(a @ a)
    if norm == 0:
        raise ValueError("the chosen units do not fire for this input (all activations are 0), so editing "
                         "their values cannot change its output; choose units with non-zero activation")
    W2 = np.array(W2, dtype=float, copy=True)
    W2[units] += np.outer(a, delta) / norm
    return W2
