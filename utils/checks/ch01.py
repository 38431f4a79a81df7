"""Checks for the chapter 1 exercises: the next-token loop and sampling.

Each check compares the learner's answer with ``utils.sampling`` on fixed and random inputs and,
when they differ, names the most likely mistake. Usage in the notebook::

    from utils.checks import ch01 as check
    check.softmax(softmax)
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import sampling as ref
from . import Fail, as_array, as_number, call, question

QUESTIONS: dict = {}

# Inputs the checks use; fixed so that every learner sees the same verdicts.
BEIJING = [4.0, 2.0, 0.5]  # capital / city / university (syllabus, chapter 1)
_rng = np.random.default_rng(2024)
RANDOM_ROWS = _rng.normal(0.0, 3.0, size=(5, 12))


def _close(a, b, tol=5e-4) -> bool:
    return abs(as_number(a, "your answer") - float(b)) <= tol


def _call(fn, *args, **kwargs):
    """Call the learner's function on float-array copies, so an in-place edit cannot change our inputs."""
    return call(fn, *[np.array(a, dtype=float) if isinstance(a, (list, np.ndarray)) else a for a in args], **kwargs)


def _expects_value_error(fn, args, what: str):
    try:
        call(fn, *args)
    except ValueError:
        return
    except Exception as e:  # any other error type is a weaker contract
        raise Fail(f"{what} raised {type(e).__name__}; raise ValueError (naming the argument) instead") from None
    raise Fail(f"{what} should raise ValueError, but it returned normally")


# ---------------------------------------------------------------------------------------------
@question(QUESTIONS, "q1", "P(tennis | football) from counts", points=1)
def conditional_probability(p_tennis_given_football):
    expected = Fraction(3, 8)  # 3 like both, 5 + 3 = 8 like football
    if _close(p_tennis_given_football, 7 / 14):
        raise Fail("that is P(tennis) = 7/14; condition on football: among the 8 who like football, how many like tennis?")
    if _close(p_tennis_given_football, 3 / 14):
        raise Fail("that is P(tennis and football) = 3/14; divide by P(football) = 8/14")
    if _close(p_tennis_given_football, 3 / 7):
        raise Fail("that is P(football | tennis) = 3/7; the condition goes after the bar: divide by the football fans")
    if not _close(p_tennis_given_football, expected):
        raise Fail(f"got {as_number(p_tennis_given_football, 'your answer'):.4f}; P(A | B) = P(A and B) / P(B)")
    return "3/8 = 0.375"


@question(QUESTIONS, "q2", "stable softmax", points=2)
def softmax(fn):
    probs = as_array(_call(fn, BEIJING), "softmax([4.0, 2.0, 0.5])")
    if probs.shape != (3,):
        raise Fail(f"softmax of 3 logits should return 3 probabilities, got shape {probs.shape}")
    total = probs.sum()
    if not np.isfinite(total) or abs(total - 1) > 1e-6:
        raise Fail(f"probabilities sum to {total:.3g}: did you divide by the sum of the exponentials?")
    if not np.allclose(probs, ref.softmax(BEIJING), atol=1e-6):
        raise Fail(f"softmax([4.0, 2.0, 0.5]) gave {np.round(probs, 3)}, expected {np.round(ref.softmax(BEIJING), 3)}")
    with np.errstate(all="ignore"):
        big = as_array(_call(fn, [1000.0, 999.0]), "softmax([1000, 999])")
    if not np.all(np.isfinite(big)):
        raise Fail("overflow for logits of 1000 (exp(1000) is inf): subtract the max logit first")
    if not np.allclose(big, ref.softmax([1000.0, 999.0]), atol=1e-6):
        raise Fail(f"softmax([1000, 999]) gave {np.round(big, 3)}, expected {np.round(ref.softmax([1000.0, 999.0]), 3)}")
    batch = as_array(_call(fn, RANDOM_ROWS), "softmax(a (5, 12) batch)")
    if batch.shape != RANDOM_ROWS.shape:
        raise Fail(f"a (5, 12) batch should give (5, 12) probabilities, got {batch.shape}")
    if not np.allclose(batch.sum(axis=-1), 1, atol=1e-6):
        raise Fail("each row of a batch should sum to 1: use axis=-1 and keepdims=True for the max and the sum")
    if not np.allclose(batch, ref.softmax(RANDOM_ROWS), atol=1e-6):
        raise Fail("rows sum to 1 but the values differ from the reference: subtract each row's own max")
    return "[0.858, 0.116, 0.026]; stable for logits of 1000; works on batches"


@question(QUESTIONS, "q3", "the winner's confidence when its logit drops 4.0 -> 2.2", points=1)
def lowered_logit(p_capital):
    expected = ref.softmax([2.2, 2.0, 0.5])[0]
    if _close(p_capital, ref.softmax(BEIJING)[0]):
        raise Fail("that is the probability before the change; recompute with logits [2.2, 2.0, 0.5]")
    if not _close(p_capital, expected, tol=1e-3):
        raise Fail(f"got {as_number(p_capital, 'p_capital'):.4f}; apply softmax to [2.2, 2.0, 0.5] and take the first entry")
    return f"{expected:.3f}, down from {ref.softmax(BEIJING)[0]:.3f}: 'capital' still wins, by a much smaller margin"


@question(QUESTIONS, "q4", "temperature", points=1)
def apply_temperature(fn):
    logits = [3.0, 1.5, 0.5]
    for t in (0.5, 2.0):
        out = as_array(_call(fn, logits, t), f"apply_temperature(logits, {t})")
        if np.allclose(out, np.multiply(logits, t)):
            raise Fail(f"at T={t} you multiplied by T; divide the logits by T (T > 1 must flatten the distribution)")
        if np.allclose(out, ref.softmax(ref.apply_temperature(logits, t))):
            raise Fail("return the scaled logits, not probabilities; softmax comes later in the pipeline")
        if not np.allclose(out, ref.apply_temperature(logits, t)):
            raise Fail(f"apply_temperature([3.0, 1.5, 0.5], {t}) gave {np.round(out, 4)}, expected "
                       f"{ref.apply_temperature(logits, t)}")
    for bad in (0.0, -1.0):
        _expects_value_error(lambda bad=bad: fn(np.array(logits), bad), (), f"apply_temperature(logits, {bad})")
    return "divides by T and rejects T <= 0"


@question(QUESTIONS, "q5", "the top probability at T = 0.1 and T = 5.0", points=1)
def extreme_temperatures(p_top_cold, p_top_hot):
    cold = ref.next_token_probs(BEIJING, temperature=0.1)[0]
    hot = ref.next_token_probs(BEIJING, temperature=5.0)[0]
    if _close(p_top_cold, hot, 1e-3) and _close(p_top_hot, cold, 1e-3):
        raise Fail("the two values are swapped: low T sharpens (top probability near 1), high T flattens")
    if not _close(p_top_cold, cold, 1e-3):
        raise Fail(f"p_top_cold = {as_number(p_top_cold, 'p_top_cold'):.4f}; divide [4.0, 2.0, 0.5] by 0.1, then softmax")
    if not _close(p_top_hot, hot, 1e-3):
        raise Fail(f"p_top_hot = {as_number(p_top_hot, 'p_top_hot'):.4f}; divide [4.0, 2.0, 0.5] by 5.0, then softmax")
    return f"{cold:.4f} (almost greedy) and {hot:.4f} (much flatter; uniform would be 0.3333)"


def _mask_of(out: np.ndarray, what: str) -> np.ndarray:
    """Which tokens a filter kept (finite logits); NaN is a mistake, not a mask."""
    if np.any(np.isnan(out)):
        raise Fail(f"{what} returned NaN; dropped tokens should be -inf")
    return np.isfinite(out)


@question(QUESTIONS, "q6", "top-k filter", points=2)
def top_k_filter(fn):
    logits = np.array([1.0, 3.0, 2.0, 0.5, 2.5])
    out = as_array(_call(fn, logits, 2), "top_k_filter(logits, 2)")
    if out.shape != logits.shape:
        raise Fail(f"return one value per token: expected shape {logits.shape}, got {out.shape}")
    if np.all(np.isfinite(out)) and np.count_nonzero(out == 0) == 3:
        raise Fail("dropped tokens are 0, but a logit of 0 still has probability; set them to -inf")
    kept = _mask_of(out, "top_k_filter")
    if kept.sum() != 2:
        raise Fail(f"kept {kept.sum()} tokens with k=2; keep the k largest logits, set the others to -inf")
    if not np.array_equal(out, ref.top_k_filter(logits, 2)):
        raise Fail(f"kept the wrong tokens or changed their values: got {out}, expected {ref.top_k_filter(logits, 2)}")
    tied = np.array([1.0, 3.0, 2.0, 3.0])
    out = as_array(_call(fn, tied, 1), "top_k_filter([1, 3, 2, 3], 1)")
    if not np.array_equal(out, ref.top_k_filter(tied, 1)):
        raise Fail("with ties at the k-th largest logit keep every tied token (compare with >= the k-th largest)")
    out = as_array(_call(fn, logits, 10), "top_k_filter(logits, 10)")
    if not np.array_equal(out, logits):
        raise Fail("k larger than the vocabulary should keep every token")
    out = as_array(_call(fn, RANDOM_ROWS, 3), "top_k_filter(batch, 3)")
    if not np.array_equal(out, ref.top_k_filter(RANDOM_ROWS, 3)):
        raise Fail("wrong on a (5, 12) batch: find the k-th largest value of each row (axis=-1)")
    return "keeps the k largest (and ties), -inf elsewhere, row by row"


def _top_p_mistakes(logits, p: float) -> dict[str, np.ndarray]:
    """The kept sets of the usual wrong top-p rules, each with the hint that names it."""
    probs = ref.softmax(logits)
    order = np.argsort(-probs, kind="stable")
    cum = np.cumsum(probs[order])

    def mask(keep_sorted):
        keep_sorted = keep_sorted.copy()
        keep_sorted[0] = True  # every variant keeps the top token
        out = np.zeros(len(probs), dtype=bool)
        out[order] = keep_sorted
        return out

    return {
        "you stop one token too early: keep tokens while the mass BEFORE each one is below p, so the token "
        "that makes the sum reach p is kept too (compare the cumulative sum without the token itself)":
            mask(cum < p - 1e-9),
        "the kept tokens reach p, but the tokens tied with the last kept one are missing: keep every token whose "
        "probability is >= that of the last token you keep":
            mask(cum - probs[order] < p - 1e-9),
    }


def _check_top_p_case(fn, logits, p: float, what: str) -> np.ndarray:
    """Run the learner's filter on one case; Fail with the hint of the mistake its kept set matches."""
    out = as_array(_call(fn, logits, p), what)
    if out.shape != np.shape(logits):
        raise Fail(f"return one value per token: expected shape {np.shape(logits)}, got {out.shape}")
    kept = _mask_of(out, "top_p_filter")
    expected = np.isfinite(ref.top_p_filter(logits, p))
    if np.array_equal(kept, expected):
        return out
    for hint, wrong in _top_p_mistakes(logits, p).items():
        if np.array_equal(kept, wrong):
            raise Fail(f"{what} kept {kept.sum()} token(s), expected {expected.sum()}: {hint}")
    if kept.sum() == 1:
        raise Fail(f"{what} kept only the top token: keep adding tokens until the cumulative probability reaches p")
    raise Fail(f"{what} kept tokens {np.flatnonzero(kept).tolist()}, expected {np.flatnonzero(expected).tolist()}")


@question(QUESTIONS, "q7", "top-p (nucleus) filter", points=2)
def top_p_filter(fn):
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs)
    out = as_array(_call(fn, logits, 0.7), "top_p_filter(log([0.5, 0.3, 0.15, 0.05]), 0.7)")
    if out.shape == logits.shape and np.allclose(out[np.isfinite(out)].sum(), 1) and np.all(out >= 0):
        raise Fail("return logits (with -inf for dropped tokens), not probabilities")
    # p = 0.7 first: no sum lands on it, so float rounding cannot hide a rule that stops too early.
    _check_top_p_case(fn, logits, 0.7, "top_p_filter(log([0.5, 0.3, 0.15, 0.05]), 0.7)")
    out = _check_top_p_case(fn, logits, 0.3, "top_p_filter(logits, 0.3)")
    out = as_array(_call(fn, logits, 0.8), "top_p_filter(log([0.5, 0.3, 0.15, 0.05]), 0.8)")
    kept = _mask_of(out, "top_p_filter").sum()
    if kept == 3:
        raise Fail("kept 3 tokens with p=0.8, but 0.5 + 0.3 already reaches 0.8: stop at the first token that makes "
                   "the sum reach p (mind float rounding: 0.5 + 0.3 may come out as 0.7999999; compare with "
                   "p minus a tiny tolerance, such as p - 1e-12)")
    _check_top_p_case(fn, logits, 0.8, "top_p_filter(log([0.5, 0.3, 0.15, 0.05]), 0.8)")
    if not np.allclose(out, ref.top_p_filter(logits, 0.8)):
        raise Fail(f"the right tokens are kept, but their values changed: got {np.round(out, 3)}, expected "
                   f"{np.round(ref.top_p_filter(logits, 0.8), 3)}; keep the kept logits as they are")
    _check_top_p_case(fn, np.log([0.4, 0.2, 0.2, 0.2]), 0.5, "top_p_filter(log([0.4, 0.2, 0.2, 0.2]), 0.5)")
    shuffled = logits[[2, 0, 3, 1]]
    out = as_array(_call(fn, shuffled, 0.8), "top_p_filter on shuffled logits")
    if not np.allclose(out, ref.top_p_filter(shuffled, 0.8)):
        raise Fail("correct on sorted input but not on shuffled input: sort the probabilities, then map the kept "
                   "set back to the original token positions")
    out = as_array(_call(fn, RANDOM_ROWS, 0.9), "top_p_filter(batch, 0.9)")
    if not np.allclose(out, ref.top_p_filter(RANDOM_ROWS, 0.9)):
        raise Fail("wrong on a (5, 12) batch of random logits: work row by row along axis=-1")
    return "the smallest set of tokens whose probability reaches p"


@question(QUESTIONS, "q8", "cross-entropy of one prediction", points=1)
def cross_entropy(fn):
    got = _call(fn, BEIJING, 0)
    if got is None:
        raise Fail("returned None: did you forget `return`?")
    got = as_number(got, "cross_entropy([4.0, 2.0, 0.5], 0)")
    expected = ref.cross_entropy(BEIJING, 0)
    if _close(got, -expected, 1e-6):
        raise Fail("wrong sign: the loss is -log P(target), which is >= 0")
    if _close(got, np.log10(ref.softmax(BEIJING)[0]) * -1, 1e-6):
        raise Fail("you used log base 10; the loss uses the natural log (np.log)")
    if not _close(got, expected, 1e-6):
        raise Fail(f"cross_entropy([4.0, 2.0, 0.5], 0) gave {float(got):.4f}, expected {expected:.4f}")
    big = as_number(_call(fn, [1000.0, 0.0], 1), "cross_entropy([1000, 0], 1)")
    if not np.isfinite(big) or not _close(big, 1000.0, 1e-6):
        raise Fail(f"cross_entropy([1000, 0], 1) gave {big}, expected 1000.0: use a stable log-softmax "
                   "(x - max - log(sum(exp(x - max)))) instead of log(softmax(x))")
    return f"-log P(capital) = {expected:.3f}; stable for extreme logits"


def _diagnose_distribution(probs, expected, logits, kw) -> str:
    """Why a sampling distribution differs: the kept set (the filters of questions 6 and 7) or the values."""
    kept, should = probs > 1e-12, expected > 0
    scaled = ref.softmax(np.where(kept, logits / kw["temperature"], -np.inf)) if kept.any() else None
    if not np.array_equal(kept, should):
        if scaled is not None and np.allclose(probs, scaled, atol=1e-6):
            return (f"with {kw} your distribution is the softmax of logits / T over the tokens it keeps, but it keeps "
                    f"{kept.sum()} token(s) where the filters keep {should.sum()}: the pipeline is right, the "
                    "filtering is not; make your top_k_filter and top_p_filter pass questions 6 and 7 first")
        return (f"with {kw} you keep {kept.sum()} token(s), expected {should.sum()}: the order is temperature, "
                "top-k, top-p, then softmax")
    return (f"with {kw} the right tokens are kept but their probabilities differ: divide the logits by the "
            "temperature before filtering, and take the softmax of the filtered logits")


@question(QUESTIONS, "q9", "the sampling distribution (temperature, top-k, top-p, renormalise)", points=2)
def next_token_probs(fn):
    cases = [
        (BEIJING, dict(temperature=1.0, top_k=None, top_p=None)),
        (RANDOM_ROWS[0], dict(temperature=0.7, top_k=None, top_p=0.9)),
        (RANDOM_ROWS[1], dict(temperature=1.5, top_k=5, top_p=None)),
        (RANDOM_ROWS[2], dict(temperature=2.0, top_k=6, top_p=0.8)),
    ]
    for logits, kw in cases:
        probs = as_array(_call(fn, logits, **kw), f"next_token_probs(..., {kw})")
        if probs.shape != np.shape(logits):
            raise Fail(f"return one probability per token: expected shape {np.shape(logits)}, got {probs.shape}")
        total = probs.sum()
        if abs(total - 1) > 1e-6:
            raise Fail(f"probabilities sum to {total:.3g} with {kw}: did you renormalise (softmax) after filtering?")
        expected = ref.next_token_probs(logits, **kw)
        if not np.allclose(probs, expected, atol=1e-6):
            if kw["top_p"] is not None:
                wrong_order = ref.softmax(ref.apply_temperature(ref.top_p_filter(logits, kw["top_p"]), kw["temperature"]))
                if kw["top_k"] is None and np.allclose(probs, wrong_order, atol=1e-6):
                    raise Fail("you applied top-p before temperature; temperature comes first, because it changes "
                               "the probabilities that top-p measures")
            raise Fail(_diagnose_distribution(probs, expected, np.asarray(logits, dtype=float), kw))
    return "temperature -> top-k -> top-p -> renormalise"


def _frequencies_match(fn, logits, kw: dict, n: int, seed: int) -> None:
    """Draw n tokens with the learner's sampler; Fail if a filtered token appears or frequencies are off."""
    rng = np.random.default_rng(seed)
    ids = np.array([as_number(_call(fn, logits, **kw, rng=rng), "sample_next(...)") for _ in range(n)]).astype(int)
    expected = ref.next_token_probs(logits, **kw)
    filters = {k: v for k, v in kw.items() if k in ("top_k", "top_p") and v is not None}
    if np.any((ids < 0) | (ids >= len(logits))):
        raise Fail(f"sampled ids {sorted(set(ids[(ids < 0) | (ids >= len(logits))].tolist()))}, outside "
                   f"[0, {len(logits) - 1}]")
    if np.any(expected[ids] == 0):
        removed = sorted(set(ids[expected[ids] == 0].tolist()))
        if filters:
            raise Fail(f"with {filters} you sampled token(s) {removed}, which the filter removes: pass top_k and "
                       "top_p on to next_token_probs (and make question 9 pass)")
        raise Fail(f"sampled a token with probability 0 (ids {removed})")
    freq = np.bincount(ids, minlength=len(logits)) / n
    # Binomial standard error of each frequency; 5 sigma keeps a correct sampler from failing by chance.
    sigma = np.sqrt(expected * (1 - expected) / n)
    if np.any(np.abs(freq - expected) > 5 * sigma + 1e-9):
        if filters:  # the unfiltered draws were right, so the filtering is what differs
            raise Fail(f"with {kw}, over {n} draws the frequencies {np.round(freq, 3)} differ from the filtered "
                       f"probabilities {np.round(expected, 3)}: your sampler draws correctly without filters, so "
                       "check that it passes top_k and top_p to next_token_probs and that question 9 passes")
        if freq.argmax() == expected.argmax() and freq.max() > 0.99:
            raise Fail("you always pick the most likely token; sample in proportion to the probabilities")
        raise Fail(f"with {kw}, over {n} draws the frequencies {np.round(freq, 3)} differ from the probabilities "
                   f"{np.round(expected, 3)}")


@question(QUESTIONS, "q10", "seeded sampling", points=2)
def sample_next(fn):
    logits = np.array([2.0, 1.0, 0.0, -1.0, -3.0])
    kw = dict(temperature=0.8, top_k=None, top_p=None)
    first = _call(fn, logits, **kw, rng=np.random.default_rng(0))
    if first is None:
        raise Fail("returned None: return the sampled token id")
    seq_a, seq_b = ([_call(fn, logits, **kw, rng=g) for _ in range(20)]
                    for g in (np.random.default_rng(5), np.random.default_rng(5)))
    if seq_a != seq_b:
        raise Fail("the same seed gave different tokens: draw from the `rng` argument, not np.random")
    _frequencies_match(fn, logits, kw, n=4000, seed=0)
    # The filters must reach the draw: a sampler that ignores top_k and top_p passes everything above.
    _frequencies_match(fn, logits, dict(temperature=1.0, top_k=2, top_p=None), n=1000, seed=1)
    _frequencies_match(fn, logits, dict(temperature=1.5, top_k=None, top_p=0.7), n=1000, seed=2)
    return "draws match the probabilities within 5 standard errors, with and without top-k and top-p"
