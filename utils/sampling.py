"""Turning logits into the next token: the NumPy reference (chapter 1, "The next-token loop").

A language model outputs one *logit* (an unnormalised score) per vocabulary token. This module
holds the small, readable reference for everything that happens between those scores and the
chosen token:

    logits -> / temperature -> top-k filter -> top-p filter -> softmax (renormalise) -> sample

Every function works on one prediction, shape ``(V,)``, or a batch, shape ``(B, V)``; it never
changes its input. ``utils.sampling_torch`` does the same in PyTorch for the GPT (tests check
that the two agree), and the chapter-1 exercises check a learner's versions against this one.

Deliberately left out: repetition penalties, beam search, min-p and typical sampling, and
speculative decoding. They are variations on the same pipeline.

Tie rules (stated because tests rely on them):
- top-k keeps *every* token whose logit equals the k-th largest one, so ties at the boundary
  can keep more than k tokens (nanoGPT and Hugging Face do the same).
- top-p keeps the smallest set of most-probable tokens whose probabilities add up to >= p, and
  also every token tied with the least probable member of that set (equal logits), so the result
  does not depend on token order. The most probable token is always kept. This is the one rule,
  stated here; ``utils.sampling_torch`` implements the same. Masses are computed in float64
  (whatever the logits' dtype), and a cumulative sum within ``TOP_P_TOLERANCE`` (1e-12) of p
  counts as reaching it: float rounding of 0.5 + 0.3 cannot make p = 0.8 take a third token, and
  the boundary token is dropped only when the mass before it is within 1e-12 of p, however small
  its own probability. Without ties this is the set Hugging Face's ``TopPLogitsWarper`` keeps when
  it computes in float64; with ties it keeps one tied token of several, in sort order. Tests check
  NumPy, PyTorch and Hugging Face on random logits with ties, -inf and extreme temperatures.
- greedy decoding picks the lowest token id among equal maxima (``np.argmax``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .validation import (
    ArgumentTypeError,
    check_bool,
    check_int,
    check_logits_shape,
    check_seed,
    check_temperature,
    check_token_ids,
    check_top_k,
    check_top_p,
    describe_bad_logits,
)

__all__ = [
    "TOP_P_TOLERANCE",
    "as_logits",
    "softmax",
    "log_softmax",
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "filter_logits",
    "next_token_probs",
    "sample_next",
    "greedy_next",
    "cross_entropy",
    "generate",
]

#: Cumulative probability within this distance of top_p counts as reaching it. It absorbs the
#: rounding of a float64 sum (about 1e-16 per term) and nothing more: a larger value, such as the
#: 1e-6 this module once used, drops the boundary token whenever that token's probability is of
#: the same order, which at GPT-2's 50,257 tokens is common.
TOP_P_TOLERANCE = 1e-12


def as_logits(logits, name: str = "logits") -> np.ndarray:
    """Return ``logits`` as a float64 array of shape (V,) or (B, V), or raise ``ValueError``.

    Rejected: other shapes, empty arrays, NaN, +inf, and rows where every entry is -inf.
    Defined in chapter 1.
    """
    try:
        x = np.asarray(logits, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an array of numbers, got {type(logits).__name__}: {e}") from None
    check_logits_shape(x.shape, name)
    message = describe_bad_logits(
        n_nan=int(np.isnan(x).sum()),
        n_posinf=int(np.isposinf(x).sum()),
        n_rows_all_masked=int(np.all(np.isneginf(x), axis=-1).sum()),
        name=name,
    )
    if message:
        raise ValueError(message)
    return x


def softmax(logits) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    Subtracting the row maximum first changes nothing mathematically (it cancels in the ratio)
    but keeps ``exp`` from overflowing: exp(1000) is inf in float64, exp(1000 - 1000) is 1.
    Defined in chapter 1.

    Example: softmax([4.0, 2.0, 0.5]) -> [0.858, 0.116, 0.026] (rounded)
    """
    x = as_logits(logits)
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)  # -inf (a filtered token) becomes exactly 0
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits) -> np.ndarray:
    """log(softmax(logits)) computed without taking the log of a tiny probability.

    log softmax(x)_i = (x_i - m) - log(sum_j exp(x_j - m)), with m the row maximum.
    Defined in chapter 1.
    """
    x = as_logits(logits)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Divide logits by the temperature T.

    T > 1 shrinks the gaps between logits (flatter distribution), T < 1 widens them (sharper);
    T -> 0 approaches greedy decoding and T -> inf the uniform distribution. Defined in chapter 1.

    Example: apply_temperature([3.0, 1.5, 0.5], 2.0) -> [1.5, 0.75, 0.25]
    """
    t = check_temperature(temperature)
    return as_logits(logits) / t


def top_k_filter(logits, top_k: int | None) -> np.ndarray:
    """Set every logit below the k-th largest one (per row) to -inf. Defined in chapter 1.

    Ties with the k-th largest logit are kept. ``top_k=None`` or ``top_k >= V`` keeps everything.

    Example: top_k_filter([1.0, 3.0, 2.0, 3.0], 2) -> [-inf, 3.0, -inf, 3.0]
    """
    x = as_logits(logits)
    k = check_top_k(top_k)
    if k is None or k >= x.shape[-1]:
        return x.copy()
    kth_largest = np.sort(x, axis=-1)[..., -k, None]  # (..., 1)
    return np.where(x >= kth_largest, x, -np.inf)


def top_p_filter(logits, top_p: float | None) -> np.ndarray:
    """Nucleus filter: keep the smallest set of most probable tokens whose probability reaches p.

    Holtzman et al. (ICLR 2020), "The Curious Case of Neural Text Degeneration". The most probable
    token is always kept; tokens tied with the last kept one are kept too. Defined in chapter 1.

    Example: probabilities [0.5, 0.3, 0.15, 0.05] with top_p=0.8 keep tokens 0 and 1
    (0.5 < 0.8, then 0.5 + 0.3 = 0.8 reaches p).
    """
    x = as_logits(logits)
    p = check_top_p(top_p)
    if p is None or p == 1.0:
        return x.copy()
    # Rank by logit, not by probability: equal logits are ties, whereas exp() of equal inputs can
    # round differently depending on where they sit in the array (vectorised code paths).
    sorted_logits = -np.sort(-x, axis=-1)  # descending, (..., V)
    sorted_probs = softmax(sorted_logits)
    # Probability mass of the tokens ranked strictly before each position (an exclusive cumsum,
    # shifted rather than computed as cumsum - probs, which would add a rounding step).
    cumulative = np.cumsum(sorted_probs, axis=-1)
    mass_before = np.concatenate([np.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], axis=-1)
    # A token is needed while the mass before it has not reached p. Mass within TOP_P_TOLERANCE
    # of p counts as reached, so float rounding of 0.5 + 0.3 cannot make p = 0.8 take a third token.
    n_keep = np.maximum((mass_before < p - TOP_P_TOLERANCE).sum(axis=-1, keepdims=True), 1)  # (..., 1)
    threshold = np.take_along_axis(sorted_logits, n_keep - 1, axis=-1)  # logit of the last kept token
    return np.where(x >= threshold, x, -np.inf)  # >=: its ties are kept too


def filter_logits(logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """The whole pipeline in the standard order: temperature, then top-k, then top-p.

    Temperature comes first because it changes the probabilities that top-p measures (top-k
    does not care: dividing by T > 0 keeps the order). Defined in chapter 1.
    """
    x = apply_temperature(logits, temperature)
    x = top_k_filter(x, top_k)
    return top_p_filter(x, top_p)


def next_token_probs(logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """The distribution the sampler actually draws from: filter, then renormalise with softmax.

    Defined in chapter 1.
    """
    return softmax(filter_logits(logits, temperature, top_k, top_p))


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(check_seed(rng, "rng"))
    raise ArgumentTypeError(f"rng must be a numpy Generator, an integer seed >= 0 or None, got {rng!r:.60} "
                            f"({type(rng).__name__})")


def sample_next(
    logits,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: np.random.Generator | int | None = None,
):
    """Draw the next token id(s). Returns an int for logits of shape (V,), an int array (B,) for (B, V).

    Pass a seeded ``np.random.default_rng(seed)`` (or an int seed) to make the draw reproducible.
    Sampling is by inverse CDF: draw u ~ U[0, 1) and take the first token whose cumulative
    probability exceeds u. Defined in chapter 1.
    """
    probs = next_token_probs(logits, temperature, top_k, top_p)
    generator = _as_rng(rng)
    batch = np.atleast_2d(probs)  # (B, V)
    cdf = np.cumsum(batch, axis=-1)
    u = generator.random(batch.shape[0])[:, None] * cdf[:, -1:]  # scaled so rounding cannot overshoot
    ids = (cdf <= u).sum(axis=-1)  # index of the first cumulative value > u
    return int(ids[0]) if probs.ndim == 1 else ids


def greedy_next(logits):
    """Pick the most probable token (argmax; the lowest id wins a tie). Defined in chapter 1.

    Greedy decoding is the T -> 0 limit of sampling. Returns an int for (V,), an int array for (B, V).
    """
    ids = np.argmax(as_logits(logits), axis=-1)
    return int(ids) if np.ndim(ids) == 0 else ids


def cross_entropy(logits, target):
    """The training loss of one prediction: -log P(target), computed from logits.

    For a batch, ``target`` has shape (B,) and the result is the (B,) array of per-row losses
    (average it yourself for a mean loss). Defined in chapter 1.

    Example: if the model gives the true next token probability 0.40, the loss is
    -ln 0.40 = 0.916 nats.
    """
    logp = log_softmax(logits)
    vocab = logp.shape[-1]
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):  # bools and floats are not ids: 0.5 would silently become 0
        raise ArgumentTypeError(f"target must be integer token id(s), got {target!r:.60} (dtype {t.dtype})")
    if logp.ndim == 1 and t.ndim != 0 or logp.ndim == 2 and t.shape != (logp.shape[0],):
        raise ValueError(f"target shape {t.shape} does not match logits shape {logp.shape}: expected one id per row")
    if np.any((t < 0) | (t >= vocab)):
        raise ValueError(f"target ids must be in [0, {vocab - 1}] (the vocabulary), got {t.tolist()}")
    if logp.ndim == 1:
        return float(-logp[int(t)])
    return -np.take_along_axis(logp, t[:, None], axis=-1)[:, 0]


def generate(
    next_logits: Callable[[Sequence[int]], np.ndarray],
    prompt: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    rng: np.random.Generator | int | None = None,
) -> list[int]:
    """The next-token loop: context -> logits -> probabilities -> choose -> append -> repeat.

    ``next_logits(context)`` is any model: it takes the token ids so far and returns the (V,)
    logits of the next token. Returns prompt + generated ids. Defined in chapter 1; the GPT's
    ``generate`` in chapter 7 is the same loop in PyTorch with a KV cache.
    """
    context = check_token_ids(prompt, "prompt")
    if not context:
        raise ValueError("prompt must contain at least one token id, got an empty sequence")
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=0)
    greedy = check_bool(greedy, "greedy")
    generator = _as_rng(rng)
    for _ in range(max_new_tokens):
        logits = np.asarray(next_logits(context))
        if logits.ndim != 1:  # a (1, V) or (B, V) answer would put arrays into the token list
            raise ValueError(f"next_logits(context) must return the (V,) logits of the next token, got shape "
                             f"{logits.shape}; for a batch of B sequences call sample_next on (B, V) logits yourself")
        if greedy:
            token = greedy_next(logits)
        else:
            token = sample_next(logits, temperature, top_k, top_p, rng=generator)
        context.append(token)
    return context
