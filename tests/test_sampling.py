"""utils.sampling (NumPy) vs utils.sampling_torch vs PyTorch and Hugging Face; known answers; bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from utils import sampling as S
from utils import sampling_torch as T

RNG = np.random.default_rng(0)
BATCH = RNG.normal(0, 3, size=(16, 50))


# --- known answers: the worked examples of chapter 1 (syllabus section 1) ---------------------

def test_beijing_softmax_known_answer():
    np.testing.assert_allclose(S.softmax([4.0, 2.0, 0.5]).round(3), [0.858, 0.116, 0.026])
    assert S.greedy_next([4.0, 2.0, 0.5]) == 0


def test_temperature_table_known_answer():
    logits = [3.0, 1.5, 0.5]
    expected = {0.5: [0.9465, 0.0471, 0.0064], 1.0: [0.7662, 0.1710, 0.0629], 2.0: [0.5685, 0.2686, 0.1629]}
    for t, p in expected.items():
        np.testing.assert_allclose(S.next_token_probs(logits, temperature=t).round(4), p)


def test_temperature_extremes():
    z = [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(S.next_token_probs(z, temperature=0.01), [0, 0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(S.next_token_probs(z, temperature=1e9), [0.25] * 4, atol=1e-8)


def test_cross_entropy_known_answer():
    assert round(S.cross_entropy(np.log([0.40, 0.30, 0.15, 0.10, 0.05]), 0), 3) == 0.916
    assert S.cross_entropy([1000.0, 0.0], 1) == pytest.approx(1000.0)


def test_lowered_logit_halves_confidence():
    assert S.softmax([2.2, 2.0, 0.5])[0] == pytest.approx(0.4996, abs=1e-4)


# --- filters: the stated rules ------------------------------------------------------------------

def test_top_k_keeps_ties_and_everything_when_k_large():
    np.testing.assert_array_equal(S.top_k_filter([1.0, 3.0, 2.0, 3.0], 1), [-np.inf, 3.0, -np.inf, 3.0])
    np.testing.assert_array_equal(S.top_k_filter([1.0, 3.0], 5), [1.0, 3.0])


def test_top_p_reaches_p_despite_float_rounding():
    kept = np.isfinite(S.top_p_filter(np.log([0.5, 0.3, 0.15, 0.05]), 0.8))
    np.testing.assert_array_equal(kept, [True, True, False, False])


def test_top_p_always_keeps_the_top_token():
    assert np.isfinite(S.top_p_filter([5.0, 0.0, 0.0], 1e-9)).sum() == 1


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(2, 30), elements=st.floats(-20, 20)), st.floats(0.01, 1.0),
       st.randoms(use_true_random=False))
def test_top_p_is_minimal_and_order_independent(logits, p, random):
    kept = np.isfinite(S.top_p_filter(logits, p))
    probs = S.softmax(logits)
    assert probs[kept].sum() >= p - 1e-6  # reaches p
    # minimal: dropping the least probable kept token (and its ties) falls below p
    if kept.sum() > 1:
        smallest = probs[kept].min()
        assert probs[kept & (probs > smallest)].sum() < p + 1e-6
    perm = list(range(len(logits)))
    random.shuffle(perm)
    np.testing.assert_array_equal(np.isfinite(S.top_p_filter(logits[perm], p)), kept[perm])


def test_filters_do_not_modify_their_input():
    x = BATCH.copy()
    S.filter_logits(x, 0.5, 5, 0.9)
    np.testing.assert_array_equal(x, BATCH)


# --- NumPy == PyTorch == independent implementations ------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_numpy_matches_torch_and_torch_builtin(name):
    ours_np = getattr(S, name)(BATCH)
    ours_t = getattr(T, name)(torch.tensor(BATCH)).numpy()
    builtin = getattr(torch, name)(torch.tensor(BATCH), dim=-1).numpy()
    np.testing.assert_allclose(ours_np, builtin, atol=1e-12)
    np.testing.assert_allclose(ours_t, builtin, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(temperature=0.7), dict(top_k=5), dict(top_p=0.9), dict(top_k=1),
                                dict(temperature=1.3, top_k=10, top_p=0.8), dict(top_p=1.0)])
def test_pipeline_numpy_matches_torch(kw):
    ours_np = S.next_token_probs(BATCH, **kw)
    ours_t = T.next_token_probs(torch.tensor(BATCH), **kw).numpy()
    np.testing.assert_allclose(ours_np, ours_t, atol=1e-12)
    # float32 logits (what a model produces) give the same kept sets
    ours_t32 = T.next_token_probs(torch.tensor(BATCH, dtype=torch.float32), **kw).numpy()
    np.testing.assert_array_equal(ours_np > 0, ours_t32 > 0)


def test_cross_entropy_matches_torch_functional():
    targets = RNG.integers(0, BATCH.shape[1], size=BATCH.shape[0])
    expected = torch.nn.functional.cross_entropy(torch.tensor(BATCH), torch.tensor(targets), reduction="none")
    np.testing.assert_allclose(S.cross_entropy(BATCH, targets), expected.numpy(), atol=1e-12)
    np.testing.assert_allclose(T.cross_entropy(torch.tensor(BATCH), torch.tensor(targets)), expected, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(temperature=0.6), dict(top_k=7), dict(top_p=0.85),
                                dict(temperature=1.5, top_k=20, top_p=0.7)])
def test_matches_hugging_face_logits_processors(kw):
    """transformers' warpers are an independent implementation of the same pipeline."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = torch.tensor(BATCH, dtype=torch.float32)
    if "temperature" in kw:
        scores = TemperatureLogitsWarper(kw["temperature"])(None, scores)
    if "top_k" in kw:
        scores = TopKLogitsWarper(kw["top_k"])(None, scores)
    if "top_p" in kw:
        scores = TopPLogitsWarper(kw["top_p"])(None, scores)
    hf = torch.softmax(scores, dim=-1).numpy()
    ours = T.next_token_probs(torch.tensor(BATCH, dtype=torch.float32), **kw).numpy()
    np.testing.assert_allclose(ours, hf, atol=1e-6)


def test_hugging_face_rejects_temperature_zero_as_the_chapter_says():
    from transformers import TemperatureLogitsWarper

    with pytest.raises(ValueError, match="do_sample=False"):
        TemperatureLogitsWarper(0.0)


# --- sampling statistics and reproducibility ---------------------------------------------------

def _assert_frequencies_match(ids, probs, n):
    freq = np.bincount(ids, minlength=len(probs)) / n
    sigma = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(freq - probs) <= 5 * sigma + 1e-12), (freq, probs)
    assert np.all(freq[probs == 0] == 0)


def test_numpy_sampler_frequencies():
    logits = np.array([2.0, 1.0, 0.5, -1.0, -4.0])
    kw = dict(temperature=0.9, top_p=0.95)
    n = 50_000
    ids = S.sample_next(np.tile(logits, (n, 1)), **kw, rng=np.random.default_rng(1))
    _assert_frequencies_match(ids, S.next_token_probs(logits, **kw), n)


def test_torch_sampler_frequencies():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -4.0], dtype=torch.float64)
    kw = dict(temperature=0.9, top_k=3)
    n = 50_000
    g = torch.Generator().manual_seed(1)
    ids = T.sample_next(logits.repeat(n, 1), **kw, generator=g).numpy()
    _assert_frequencies_match(ids, S.next_token_probs(logits.numpy(), **kw), n)


def test_a_wrong_sampler_would_fail_the_frequency_check():
    probs = np.array([0.5, 0.3, 0.2])
    with pytest.raises(AssertionError):
        _assert_frequencies_match(np.zeros(10_000, dtype=int), probs, 10_000)


def test_seeded_sampling_is_reproducible():
    a = [S.sample_next(BATCH[0], rng=np.random.default_rng(7)) for _ in range(3)]
    assert len(set(a)) == 1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(T.sample_next(torch.tensor(BATCH), generator=g1), T.sample_next(torch.tensor(BATCH), generator=g2))
    assert S.sample_next(BATCH[0], rng=5) == S.sample_next(BATCH[0], rng=5)


def test_one_row_returns_an_int_and_a_batch_an_array():
    assert isinstance(S.sample_next([1.0, 2.0], rng=0), int)
    assert isinstance(T.sample_next(torch.tensor([1.0, 2.0])), int)
    assert S.sample_next(BATCH, rng=0).shape == (16,)
    assert T.greedy_next(torch.tensor(BATCH)).shape == (16,)


# --- bad input: a ValueError that names the argument, the value and what is allowed -------------

BAD_ARGS = [
    (dict(temperature=0), "temperature must be a finite number > 0, got 0"),
    (dict(temperature=-1.0), "temperature must be a finite number > 0, got -1.0"),
    (dict(temperature=float("nan")), "temperature must be a finite number > 0, got nan"),
    (dict(temperature=float("inf")), "temperature must be a finite number > 0, got inf"),
    (dict(top_k=0), "top_k must be an integer >= 1 or None, got 0"),
    (dict(top_k=2.5), "top_k must be an integer >= 1 or None, got 2.5"),
    (dict(top_p=0.0), r"top_p must be a number in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), r"top_p must be a number in \(0, 1\], got 1.5"),
    (dict(top_p=-0.1), r"top_p must be a number in \(0, 1\], got -0.1"),
]


@pytest.mark.parametrize("kw,message", BAD_ARGS)
def test_bad_arguments_numpy(kw, message):
    with pytest.raises(ValueError, match=message):
        S.sample_next([1.0, 2.0], **kw, rng=0)


@pytest.mark.parametrize("kw,message", BAD_ARGS)
def test_bad_arguments_torch(kw, message):
    with pytest.raises(ValueError, match=message):
        T.sample_next(torch.tensor([1.0, 2.0]), **kw)


BAD_LOGITS = [
    ([1.0, float("nan")], "logits contain 1 NaN"),
    ([1.0, float("inf")], r"logits contain 1 \+inf"),
    ([float("-inf"), float("-inf")], "every token is -inf"),
    ([], "must not be empty"),
    ([[1.0], []], None),  # ragged: not an array at all
    (5.0, r"shape \(V,\) or \(B, V\), got 0 dimension"),
    (np.zeros((2, 2, 2)), r"shape \(V,\) or \(B, V\), got 3 dimension"),
]


@pytest.mark.parametrize("logits,message", BAD_LOGITS)
def test_bad_logits_numpy(logits, message):
    with pytest.raises(ValueError, match=message):
        S.softmax(logits)


@pytest.mark.parametrize("logits,message", [b for b in BAD_LOGITS if b[1] is not None])
def test_bad_logits_torch(logits, message):
    with pytest.raises(ValueError, match=message):
        T.softmax(torch.tensor(logits, dtype=torch.float32))


def test_minus_inf_is_a_mask_not_an_error():
    np.testing.assert_allclose(S.softmax([0.0, -np.inf]), [1.0, 0.0])
    assert S.sample_next([0.0, -np.inf], rng=0) == 0


def test_bad_targets_and_loop_arguments():
    with pytest.raises(ValueError, match=r"target ids must be in \[0, 2\]"):
        S.cross_entropy([1.0, 2.0, 3.0], 3)
    with pytest.raises(ValueError, match="target must be integer"):
        S.cross_entropy([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="target shape"):
        T.cross_entropy(torch.zeros(2, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="prompt must contain at least one token"):
        S.generate(lambda c: np.zeros(3), [], 5)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0, got -1"):
        S.generate(lambda c: np.zeros(3), [0], -1)
    with pytest.raises(ValueError, match="rng must be"):
        S.sample_next([1.0, 2.0], rng="seed")


def test_error_messages_name_value_and_range():
    with pytest.raises(ValueError) as info:
        S.apply_temperature([1.0], -0.5)
    text = str(info.value)
    assert "temperature" in text and "-0.5" in text and "> 0" in text
    assert math.isfinite(S.apply_temperature([1.0], 1e-6)[0])
