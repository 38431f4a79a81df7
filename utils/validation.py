"""Argument checks shared by the NumPy and PyTorch code (chapter 1 onwards).

Every check raises ``ValueError`` with a message that names the argument, the value it got
and what is allowed, so a learner sees *what* to fix rather than a NaN three cells later.

Conventions used across the course:
- ``logits`` have shape ``(V,)`` for one prediction or ``(B, V)`` for a batch of B predictions,
  where V is the vocabulary size.
- ``-inf`` in logits means "this token was filtered out" (top-k / top-p write it). ``NaN`` and
  ``+inf`` are always errors, and so is a row in which every token is ``-inf``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = [
    "check_temperature",
    "check_top_k",
    "check_top_p",
    "check_logits_shape",
    "describe_bad_logits",
]


def _is_real_number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def check_temperature(temperature) -> float:
    """Return ``temperature`` as a float, or raise if it is not a finite number > 0.

    Example: ``check_temperature(0.7) -> 0.7``; ``check_temperature(0)`` raises.
    """
    if not _is_real_number(temperature) or not math.isfinite(float(temperature)) or temperature <= 0:
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}. "
            "For greedy decoding use greedy_next() (the T -> 0 limit) instead of temperature=0."
        )
    return float(temperature)


def check_top_k(top_k, vocab_size: int | None = None) -> int | None:
    """Return ``top_k`` as an int (or None for "no top-k filter"); raise unless it is an integer >= 1.

    A ``top_k`` larger than the vocabulary is allowed and keeps every token (as in Hugging Face).
    """
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, Integral):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    top_k = int(top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k}")
    return top_k


def check_top_p(top_p) -> float | None:
    """Return ``top_p`` as a float (or None for "no nucleus filter"); raise unless 0 < top_p <= 1."""
    if top_p is None:
        return None
    if not _is_real_number(top_p) or not (0.0 < float(top_p) <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
    return float(top_p)


def check_logits_shape(shape: tuple, name: str = "logits") -> None:
    """Raise unless ``shape`` is ``(V,)`` or ``(B, V)`` with V >= 1 and B >= 1."""
    if len(shape) not in (1, 2):
        raise ValueError(
            f"{name} must have shape (V,) or (B, V), got {len(shape)} dimension(s) with shape {tuple(shape)}"
        )
    if 0 in shape:
        raise ValueError(f"{name} must not be empty, got shape {tuple(shape)}")


def describe_bad_logits(n_nan: int, n_posinf: int, n_rows_all_masked: int, name: str = "logits") -> str | None:
    """Return an error message for NaN / +inf / fully masked rows, or None if the logits are usable."""
    if n_nan:
        return f"{name} contain {n_nan} NaN value(s); a model that outputs NaN has diverged or read bad input"
    if n_posinf:
        return f"{name} contain {n_posinf} +inf value(s); logits must be finite (-inf is allowed as a mask)"
    if n_rows_all_masked:
        return (
            f"{name} have {n_rows_all_masked} row(s) where every token is -inf, "
            "so no token can be sampled; allowed: at least one finite logit per row"
        )
    return None
