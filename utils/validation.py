"""Argument checks shared by the whole course (chapter 1 onwards).

Every check raises ``ValueError`` with a message that names the argument, the value it got
and what is allowed, so a learner sees *what* to fix rather than a NaN three cells later. A value
of the wrong *type* (a float where a count belongs, text where a number belongs) raises
``ArgumentTypeError``, which is both a ``TypeError`` and a ``ValueError``: ``except ValueError``
keeps catching every bad argument.

The rules, stated once (CONTRIBUTING.md has the same table):

- **counts and sizes** (``check_int``): an ``int`` or NumPy integer; ``True``/``False`` are not
  counts, and neither is ``2.0``.
- **real numbers** (``check_real``): an ``int``, ``float`` or NumPy number, never a bool; finite
  unless the range says otherwise (NaN is never allowed: every comparison with it is False, so
  it slips through range checks written as ``if x < 0: raise``).
- **probabilities** are reals in the stated interval, e.g. ``top_p`` in (0, 1].
- **temperatures** are finite reals > 0 (``check_temperature``).
- **token ids** (``check_token_ids``): integers (Python, NumPy or one-element integer tensors), in
  [0, vocab_size) when the vocabulary is known; floats are refused, not truncated.
- **seeds** (``check_seed``): integers >= 0; ``None`` would mean "a different run each time".
- **choices** (``check_choice``): one of a fixed set of strings.

Conventions used across the course:
- ``logits`` have shape ``(V,)`` for one prediction or ``(B, V)`` for a batch of B predictions,
  where V is the vocabulary size.
- ``-inf`` in logits means "this token was filtered out" (top-k / top-p write it). ``NaN`` and
  ``+inf`` are always errors, and so is a row in which every token is ``-inf``.
"""

from __future__ import annotations

import math
import operator
from numbers import Integral, Real

__all__ = [
    "ArgumentTypeError",
    "check_int",
    "check_real",
    "check_bool",
    "check_choice",
    "check_seed",
    "check_token_ids",
    "check_temperature",
    "check_top_k",
    "check_top_p",
    "check_logits_shape",
    "describe_bad_logits",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` that ``except ValueError`` also catches."""


def _is_real_number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _is_integer(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _range_text(minimum, maximum, low_open: bool = False, high_open: bool = False) -> str:
    """">= 1", "> 0", "<= 5" or "in [0, 1)": the allowed range, as the messages print it."""
    if minimum is not None and maximum is not None:
        return f"in {'(' if low_open else '['}{minimum}, {maximum}{')' if high_open else ']'}"
    if minimum is not None:
        return f"{'>' if low_open else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if high_open else '<='} {maximum}"
    return ""


def _got(value) -> str:
    """The value as the messages print it; a bool says so, since True prints like a flag, not a count."""
    return f"{value!r} (a bool)" if isinstance(value, bool) else repr(value)


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise unless it is an integer in [minimum, maximum].

    Example: ``check_int(3, "top_k", minimum=1) -> 3``; ``check_int(True, "n", minimum=1)`` raises.
    """
    allowed = f"an integer {_range_text(minimum, maximum)}".rstrip()
    if not _is_integer(value):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {_got(value)}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def check_real(value, name: str, minimum: float | None = None, maximum: float | None = None, *,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """Return ``value`` as a float, or raise unless it is a real number in the given range.

    ``low_open``/``high_open`` exclude the end points; ``finite=False`` allows +-inf (never NaN).
    Example: ``check_real(0.9, "top_p", 0, 1, low_open=True) -> 0.9``.
    """
    allowed = " ".join(filter(None, ["a finite number" if finite else "a number",
                                     _range_text(minimum, maximum, low_open, high_open)]))
    if not _is_real_number(value):
        raise ArgumentTypeError(f"{name} must be {allowed}, got {_got(value)}")
    x = float(value)
    bad = (math.isnan(x) or (finite and math.isinf(x))
           or (minimum is not None and (x <= minimum if low_open else x < minimum))
           or (maximum is not None and (x >= maximum if high_open else x > maximum)))
    if bad:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return x


def check_bool(value, name: str) -> bool:
    """Return ``value`` if it is True or False (NumPy's bool too), else raise."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    if not isinstance(value, str) or value not in choices:
        names = [repr(c) for c in choices]
        allowed = " or ".join(names) if len(names) <= 2 else "one of " + ", ".join(names)
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_seed(seed, name: str = "seed") -> int:
    """Return ``seed`` as an int >= 0. ``None`` is refused: it would seed from the clock, a different run each time."""
    if seed is None:
        raise ArgumentTypeError(f"{name} must be an integer >= 0, got None; None would give a different result "
                                "on every run")
    return check_int(seed, name, minimum=0)


def _as_index(x):
    """x as an int if it is an integer (Python, NumPy, one-element integer tensor), else None. Never a bool."""
    if isinstance(x, bool) or type(x).__name__ == "bool_":
        return None
    if getattr(x, "dtype", None) is not None and getattr(x, "ndim", 0) == 0 and "bool" in str(x.dtype):
        return None  # a 0-d boolean array or tensor
    try:
        return operator.index(x)  # ints, NumPy integers and integer tensors; floats raise TypeError
    except TypeError:
        return None


def check_token_ids(ids, name: str = "ids", vocab_size: int | None = None) -> list[int]:
    """Return ``ids`` as a list of ints, or raise unless every id is an integer (in [0, vocab_size)).

    Floats are refused rather than truncated: ``3.7`` is not a token id, and ``int(3.7) == 3`` would
    silently decode a different token.
    """
    if isinstance(ids, (str, bytes)):
        raise ArgumentTypeError(f"{name} must be a sequence of integer token ids, got {type(ids).__name__} {ids!r}")
    try:
        items = list(ids)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be a sequence of integer token ids, got {type(ids).__name__}") from None
    out = []
    for i, x in enumerate(items):
        v = _as_index(x)
        if v is None:
            raise ArgumentTypeError(f"{name}[{i}] must be an integer token id, got {_got(x)} "
                                    f"({type(x).__name__}); floats are not rounded to ids")
        out.append(v)
    if vocab_size is not None:
        bad = [v for v in out if not 0 <= v < vocab_size]
        if bad:
            raise ValueError(f"{name} must be token ids in [0, {vocab_size - 1}] (the vocabulary), got {bad[:5]}")
    return out


def check_temperature(temperature) -> float:
    """Return ``temperature`` as a float, or raise if it is not a finite number > 0.

    Example: ``check_temperature(0.7) -> 0.7``; ``check_temperature(0)`` raises.
    """
    if not _is_real_number(temperature) or not math.isfinite(float(temperature)) or temperature <= 0:
        error = ValueError if _is_real_number(temperature) else ArgumentTypeError
        raise error(
            f"temperature must be a finite number > 0, got {_got(temperature)}. "
            "For greedy decoding use greedy_next() (the T -> 0 limit) instead of temperature=0."
        )
    return float(temperature)


def check_top_k(top_k, vocab_size: int | None = None) -> int | None:
    """Return ``top_k`` as an int (or None for "no top-k filter"); raise unless it is an integer >= 1.

    A ``top_k`` larger than the vocabulary is allowed and keeps every token (as in Hugging Face).
    """
    if top_k is None:
        return None
    if not _is_integer(top_k):
        raise ArgumentTypeError(f"top_k must be an integer >= 1 or None, got {_got(top_k)}")
    top_k = int(top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k}")
    return top_k


def check_top_p(top_p) -> float | None:
    """Return ``top_p`` as a float (or None for "no nucleus filter"); raise unless 0 < top_p <= 1."""
    if top_p is None:
        return None
    if not _is_real_number(top_p):
        raise ArgumentTypeError(f"top_p must be a number in (0, 1], got {_got(top_p)}")
    if not (0.0 < float(top_p) <= 1.0):
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
