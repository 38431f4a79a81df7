"""`utils` under hostile input (issue 18): one test per defect, each failing on the code before the fix,
and property-based tests (hypothesis) for the invariants a reader relies on.

Property tests are derandomised (the same examples on every run) and small: together they take
well under a minute on two cores.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from utils import sampling as S
from utils import sampling_torch as T
from utils.bpe import GPT2_PATTERN, BPETokenizer
from utils.context_budget import Evidence, Turn, chunk_text, plan_context
from utils.course_tokenizers import course_tokenizer
from utils.pretraining import world_tokenizer

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOKENIZERS = {"course": course_tokenizer, "world": world_tokenizer}


def _tokens(tok, text: str) -> int:
    return len(tok.encode(text, allowed_special="none"))


class _Timeout(Exception):
    pass


def _within(seconds: float, fn):
    """fn() or _Timeout: a test of a former hang must fail, not hang the suite."""
    def alarm(signum, frame):
        raise _Timeout(f"no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- 1. the context planner never overflows ------------------------------------------------------

def test_issue_example_system_prompt_ending_in_a_newline():
    """Counted apart, "System: Answer briefly.\\n\\n" and the question are 30 tokens; joined, 31. The old
    planner accepted window 40 with reserve 10 and built a 31 + 10 = 41-token request."""
    tok = course_tokenizer()
    system, question = "Answer briefly.\n", "When did tea reach Europe?"
    with pytest.raises(ValueError, match=r"= 31 tokens when joined \+ answer_reserve \(10\) = 41 tokens > window \(40\)"):
        plan_context(40, system, question, 10)
    plan = plan_context(41, system, question, 10)
    assert plan.prompt_tokens == _tokens(tok, plan.prompt()) == 31 and plan.free_tokens == 0
    assert "joined, the prompt has 31" in plan.report()


def test_a_realistic_plan_fits_after_assembly():
    """Evidence and turns that end in spaces and newlines: their parts' counts do not add up."""
    tok = course_tokenizer()
    evidence = [Evidence("Tea reached Europe in 1610 on Dutch ships. \n", 0.9, "a"),
                Evidence("Pu'er is pressed into cakes and aged.\n\n", 0.8, "b"),
                Evidence("Green tea is heated to stop oxidation.  ", 0.5, "c")]
    history = [Turn("user", "I drink tea daily.\n"), Turn("assistant", "Which kind?  \n"), Turn("user", "Pu'er.\n")]
    for window in range(40, 140):
        try:
            plan = plan_context(window, "Cite sources.\n", "When did tea reach Europe?\n", 12, history, evidence,
                                min_chunk_tokens=2, history_strategy="summarise")
        except ValueError as e:
            assert "impossible budget" in str(e)
            continue
        n = _tokens(tok, plan.prompt())
        assert n == plan.prompt_tokens and n + 12 <= window, (window, n)


@pytest.mark.parametrize("name", ["course", "world", "mixed"])
def test_cutting_chinese_evidence_never_leaves_a_broken_character(name):
    """The chapter 2 'mixed' tokenizer merges bytes across character boundaries; a cut at a token
    boundary then ended in U+FFFD (6 of 137 cuts of the essay before the fix)."""
    from utils.corpus import parallel_text
    from utils.course_tokenizers import english_and_mixed_tokenizers

    tok = english_and_mixed_tokenizers()[1] if name == "mixed" else TOKENIZERS[name]()
    cuts = 0
    for paragraph in parallel_text("zh"):
        for window in range(30, 400, 11):
            plan = plan_context(window, "", "茶?", 5, evidence=[Evidence(paragraph, 1.0, "zh")], tokenizer=tok,
                                min_chunk_tokens=1)
            for item in plan.items:
                if item.action == "cut":
                    cuts += 1
                    assert "\ufffd" not in item.text and item.text.endswith("...\n")
            assert _tokens(tok, plan.prompt()) + 5 <= window
    assert cuts > 30


_PIECES = list("ab etTQ.,!?'\n\t") + ["茶", "是", "药", "。", "Yunnan", "1610", "  ", "\n\n", " \n"]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=25).map("".join)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
@PROPERTY
@given(data=st.data())
def test_property_the_assembled_prompt_fits_the_window(name, data):
    tok = TOKENIZERS[name]()
    system = data.draw(_TEXT, "system")
    question = data.draw(_TEXT.filter(str.strip), "question")
    history = [Turn(data.draw(st.sampled_from(["user", "assistant"])), data.draw(_TEXT))
               for _ in range(data.draw(st.integers(0, 4), "turns"))]
    evidence = [Evidence(data.draw(_TEXT), data.draw(st.floats(0, 1)), data.draw(st.sampled_from(["", "src"])))
                for _ in range(data.draw(st.integers(0, 4), "chunks"))]
    window, reserve = data.draw(st.integers(1, 200), "window"), data.draw(st.integers(0, 40), "reserve")
    kw = dict(min_chunk_tokens=data.draw(st.integers(0, 8)), history_strategy=data.draw(st.sampled_from(["drop", "summarise"])),
              max_evidence_tokens=data.draw(st.none() | st.integers(0, 80)), min_score=data.draw(st.floats(0, 1)),
              tokenizer=tok)
    try:
        plan = plan_context(window, system, question, reserve, history, evidence, **kw)
    except ValueError as e:
        assert "impossible budget" in str(e)
        return
    n = _tokens(tok, plan.prompt())
    assert n == plan.prompt_tokens and n + reserve <= window
    assert not any("\ufffd" in i.text for i in plan.items if i.action == "cut")
    assert plan.prompt().endswith(f"Question: {question}\n")  # the question is never dropped


# --- 2. any BPE pattern round-trips --------------------------------------------------------------

def test_a_pattern_that_matches_only_letters_keeps_everything_else():
    tok = BPETokenizer(pattern=r"[a-z]+").train("Hello World! " * 5, 270)
    assert tok.decode(tok.encode("Hello World!")) == "Hello World!"  # was "elloorld"


def test_a_pattern_with_a_capture_group_keeps_the_whole_match():
    tok = BPETokenizer(pattern=r"(\w)\w*").train("tea time " * 5, 262)
    assert tok.decode(tok.encode("tea time, twice")) == "tea time, twice"  # was "ttt"


PATTERNS = [GPT2_PATTERN, r"[a-z]+", r"(\w)\w*", r"\d+", r"\s", r"\b", r"(?=a)", r"x*", r"(a)(b)?", r"[^\W\d]+|\d",
            r"\p{Han}", r"(?i)THE"]


@PROPERTY
@given(pattern=st.sampled_from(PATTERNS), corpus=st.text(max_size=80), texts=st.lists(st.text(max_size=40), max_size=4),
       merges=st.integers(0, 30))
def test_property_any_pattern_round_trips(pattern, corpus, texts, merges):
    tok = BPETokenizer(pattern=pattern).train(corpus, 256 + merges)
    for text in [corpus, *texts]:
        assert tok.decode(tok.encode(text, allowed_special="none")) == text


def test_a_pattern_that_is_not_a_regular_expression_is_refused():
    with pytest.raises(ValueError, match=r"pattern '\[a-' is not a valid regular expression"):
        BPETokenizer(pattern="[a-")


# --- 3. the tiny world: no hang, no unreproducible world -------------------------------------------

def test_world_refuses_more_names_than_it_can_make_instead_of_hanging():
    from utils.tiny_world import World

    with pytest.raises(ValueError, match=r"2 \* n_countries \+ n_people must be at most 16,250"):
        _within(10, lambda: World(n_people=16_300))
    big = _within(30, lambda: World(seed=1, n_countries=5, n_people=16_000))  # near the limit: still quick
    assert len(set(big.people) | set(big.countries)) == 16_005


def test_world_refuses_a_seed_of_none():
    from utils.tiny_world import World

    with pytest.raises(ValueError, match="seed must be an integer >= 0, got None"):
        World(seed=None)


# --- 4. attention masks: both of PyTorch's conventions -----------------------------------------------

def test_additive_float_masks_are_added_like_torch_and_boolean_masks_select():
    from utils.attention import causal_mask, scaled_dot_product_attention

    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    keep = causal_mask(5)
    additive = np.where(keep, 0.0, -np.inf)
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a)[None] for a in (Q, K, V)), attn_mask=torch.tensor(additive)[None])[0].numpy()
    np.testing.assert_allclose(scaled_dot_product_attention(Q, K, V, additive), expected, atol=1e-12)
    np.testing.assert_allclose(scaled_dot_product_attention(Q, K, V, keep), expected, atol=1e-12)
    bias = rng.normal(size=(5, 5)) - 5.0  # a general additive bias (all <= 0), as torch allows
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a)[None] for a in (Q, K, V)), attn_mask=torch.tensor(bias)[None])[0].numpy()
    np.testing.assert_allclose(scaled_dot_product_attention(Q, K, V, bias), expected, atol=1e-12)


@pytest.mark.parametrize("mask,message", [
    (np.tril(np.ones((3, 3))), r"float mask is added to the scores .*\(mask.astype\(bool\)\)"),
    (np.tril(np.ones((3, 3), dtype=int)), "mask must be boolean .* or float"),
    (np.full((3, 3), -np.inf), "a mask row is all -inf"),
])
def test_ambiguous_masks_are_refused(mask, message):
    from utils.attention import scaled_dot_product_attention

    with pytest.raises(ValueError, match=message):
        scaled_dot_product_attention(np.eye(3), np.eye(3), np.eye(3), mask)


# --- 5. the NumPy next-token loop --------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 5), (3, 5)])
def test_generate_refuses_a_model_that_returns_a_batch(shape):
    with pytest.raises(ValueError, match=r"next_logits\(context\) must return the \(V,\) logits"):
        S.generate(lambda context: np.zeros(shape), [0], 3, rng=0)


# --- 6. GPTConfig and GPT.forward ----------------------------------------------------------------------

@pytest.mark.parametrize("kw,message", [
    (dict(rope_base=0.0), "rope_base must be a finite number > 0.0, got 0.0"),
    (dict(rope_base=-10.0), "rope_base must be a finite number > 0.0"),
    (dict(rope_scale=float("nan")), "rope_scale must be a finite number >= 1.0, got nan"),
    (dict(rope_scale=float("inf")), "rope_scale must be a finite number >= 1.0, got inf"),
    (dict(layer_norm_eps=0.0), "layer_norm_eps must be a finite number > 0.0, got 0.0"),
    (dict(n_layer=True), r"n_layer must be an integer >= 1, got True \(a bool\)"),
    (dict(n_embd=64.0), "n_embd must be an integer >= 1, got 64.0"),
])
def test_gpt_config_refuses_values_that_give_wrong_logits(kw, message):
    from utils.model import GPTConfig

    with pytest.raises(ValueError, match=message):
        GPTConfig(**{"position": "rope", **kw})


def test_bad_rope_values_set_after_construction_are_caught_at_forward():
    """Chapter 8 changes config.rope_scale on a built model; NaN angles used to give plausible logits."""
    from utils.model import GPT, GPTConfig

    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8, position="rope"))
    model.config.rope_scale = float("nan")
    with pytest.raises(ValueError, match="rope_scale must be a finite number >= 1.0, got nan"):
        model(torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.parametrize("make,error,message", [
    (lambda: (torch.zeros(1, 4), None), TypeError, r"idx must hold integer token ids .* got dtype torch.float32"),
    (lambda: (torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), 10)), ValueError,
     r"targets must be token ids in \[0, 9\] or -100 \(no loss at that position\), got \[10"),
    (lambda: (torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), -1)), ValueError,
     r"targets must be token ids in \[0, 9\] or -100 .* got \[-1"),
    (lambda: (torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4)), TypeError, "targets must hold integer token ids"),
])
def test_gpt_forward_names_bad_ids_and_targets_and_the_ignore_index(make, error, message):
    from utils.model import GPT, IGNORE_INDEX, GPTConfig

    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8))
    idx, targets = make()
    with pytest.raises(error, match=message):
        model(idx, targets)
    assert IGNORE_INDEX == -100
    _, loss = model(torch.zeros(1, 4, dtype=torch.long), torch.tensor([[1, -100, 2, -100]]))
    assert torch.isfinite(loss)


# --- 7. TrainConfig, Trainer and lr_at ---------------------------------------------------------------

@pytest.mark.parametrize("kw,message", [
    (dict(eval_every=0), "eval_every must be an integer >= 1, got 0"),
    (dict(eval_batches=0), "eval_batches must be an integer >= 1, got 0"),
    (dict(grad_clip=float("nan")), "grad_clip must be a finite number > 0.0, got nan"),
    (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0.0, got -0.1"),
    (dict(max_steps=10.5), "max_steps must be an integer >= 1, got 10.5"),
    (dict(warmup_steps=2.5), r"warmup_steps must be an integer in \[0, 300\], got 2.5"),
])
def test_train_config_refuses_what_would_crash_or_corrupt_fit(kw, message):
    from utils.train import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw)


def test_lr_at_refuses_a_negative_step():
    from utils.train import TrainConfig, lr_at

    with pytest.raises(ValueError, match="step must be an integer >= 0, got -5"):
        lr_at(-5, TrainConfig())  # was -3e-4 * 4 / 30 < 0


# --- 8. BPETokenizer.load validates the file ---------------------------------------------------------

def _saved(tmp_path, edit):
    tok = BPETokenizer(special_tokens=["<|endoftext|>"]).train("the cat sat on the mat " * 10, 270)
    path = tmp_path / "tok.json"
    tok.save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["merges"].append(d["merges"][0]), r"merge \d+ repeats merge 0"),
    (lambda d: d["merges"].append([0, 400]), r"merge \d+ uses a token that does not exist yet"),
    (lambda d: d["merges"].append([1.5, 2]), r"merge \d+ must be a pair of token ids"),
    (lambda d: d["special_tokens"].append("<|endoftext|>"), "special_tokens has a name twice"),
    (lambda d: d.update(pattern=5), "'pattern' must be a str or null"),
    (lambda d: d.update(pattern="[a-"), "is not a valid regular expression"),
])
def test_load_refuses_files_whose_ids_would_collide(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        BPETokenizer.load(_saved(tmp_path, edit))


def test_a_valid_file_loads_with_unique_contiguous_ids(tmp_path):
    tok = BPETokenizer.load(_saved(tmp_path, lambda d: None))
    ids = sorted(tok.vocab) + sorted(tok.special_tokens.values())
    assert ids == list(range(tok.vocab_size))


# --- 9. one top-p rule, equal in NumPy, PyTorch and Hugging Face --------------------------------------

def _hf_probs(logits: np.ndarray, temperature: float, top_k, top_p) -> np.ndarray:
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = torch.tensor(np.atleast_2d(logits), dtype=torch.float64)  # float64: no float32 rounding in HF
    scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, dim=-1).numpy().reshape(np.shape(logits))


def _near_the_boundary(logits: np.ndarray, temperature: float, top_k, top_p, band: float = 1e-9) -> bool:
    """Is some cumulative mass within ``band`` of p? There the rule depends on float rounding, and
    HF (which has no tolerance) may legitimately differ from TOP_P_TOLERANCE."""
    if top_p is None:
        return False
    x = S.top_k_filter(S.apply_temperature(logits, temperature), top_k)
    probs = np.sort(S.softmax(x))[::-1]
    mass_before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])
    return bool(np.any(np.abs(mass_before - top_p) < band))


def _gpt2_sized_boundary_cases(n=30, seed=0):
    """GPT-2's 50,257 tokens with p set just past a token whose probability is below 1e-6: the old
    fixed 1e-6 tolerance counted p as reached one token early and dropped that token."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        logits = rng.normal(0.0, 2.0, size=50_257)
        probs = S.softmax(logits)
        order = np.argsort(-probs)
        mass = np.cumsum(probs[order])
        k = int(np.flatnonzero(probs[order] < 5e-7)[0])  # the first tiny token in rank order
        top_p = float(mass[k - 1] + 0.5 * probs[order][k])  # p lies inside that token's share
        cases.append((logits, top_p))
    return cases


def test_top_p_keeps_the_boundary_token_at_gpt2_vocabulary_size():
    for logits, top_p in _gpt2_sized_boundary_cases():
        ours = S.next_token_probs(logits, top_p=top_p) > 0
        hf = _hf_probs(logits, 1.0, None, top_p) > 0
        torch_ = T.next_token_probs(torch.tensor(logits), top_p=top_p).numpy() > 0
        assert np.array_equal(ours, hf) and np.array_equal(ours, torch_), (ours.sum(), hf.sum(), torch_.sum())


def test_numpy_and_torch_agree_at_extreme_temperatures_in_float32():
    rng = np.random.default_rng(3)
    x32 = torch.tensor(rng.normal(0, 3, size=(4, 1000)), dtype=torch.float32)
    for temperature in (1e-6, 1e6):
        for top_p in (0.5, 0.9):
            ours = np.isfinite(S.filter_logits(x32.numpy(), temperature, None, top_p))
            theirs = torch.isfinite(T.filter_logits(x32, temperature, None, top_p)).numpy()
            assert np.array_equal(ours, theirs), (temperature, top_p, (ours != theirs).sum())


_LOGIT = st.one_of(st.sampled_from([-np.inf, -3.0, 0.0, 0.5, 2.0, 7.0]),  # repeated values: ties
                   st.floats(-30, 30, allow_nan=False, allow_infinity=False))


@PROPERTY
@given(logits=st.lists(_LOGIT, min_size=1, max_size=40).filter(lambda v: np.isfinite(v).any()),
       temperature=st.sampled_from([1e-6, 1e-2, 0.5, 1.0, 3.0, 1e3, 1e6]),
       top_k=st.none() | st.integers(1, 45), top_p=st.none() | st.floats(0.01, 1.0))
def test_property_keep_sets_equal_in_numpy_torch_and_hugging_face(logits, temperature, top_k, top_p):
    x = np.array(logits)
    ours = S.next_token_probs(x, temperature, top_k, top_p)
    ours_torch = T.next_token_probs(torch.tensor(x), temperature, top_k, top_p).numpy()
    assert np.array_equal(ours > 0, ours_torch > 0)  # the same rule, computed twice
    np.testing.assert_allclose(ours, ours_torch, atol=1e-12)
    assume(not _near_the_boundary(x, temperature, top_k, top_p))
    hf = _hf_probs(x, temperature, top_k, top_p)
    kept_hf = hf > 0
    if kept_hf.any():  # HF keeps one of several tied tokens, in sort order; our rule keeps all of them
        scaled = np.where(np.isfinite(x), x / temperature, -np.inf)
        kept_hf |= (S.softmax(scaled) > 0) & (scaled >= scaled[kept_hf].min()) & (ours > 0)
    assert np.array_equal(ours > 0, kept_hf)


def test_the_hugging_face_comparison_can_fail():
    """Without the tie rule, HF and we differ on a tie at the boundary: the property test would see it."""
    x = np.log(np.array([0.4, 0.2, 0.2, 0.2]))
    assert (S.next_token_probs(x, top_p=0.5) > 0).sum() == 4
    assert (_hf_probs(x, 1.0, None, 0.5) > 0).sum() == 2


# --- 10. smaller ones --------------------------------------------------------------------------------

def test_true_is_not_a_count():
    from utils.model import GPT, GPTConfig

    with pytest.raises(ValueError, match=r"max_new_tokens must be an integer >= 0, got True \(a bool\)"):
        S.generate(lambda c: np.zeros(3), [0], True)
    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match=r"max_new_tokens must be an integer >= 0, got True \(a bool\)"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), True)
    with pytest.raises(ValueError, match=r"max_tokens must be an integer >= 1, got True \(a bool\)"):
        chunk_text("One sentence. Two.", True)


@pytest.mark.parametrize("ids", [[72.9, 105], [np.float32(72.0)], [True], np.array([72.0, 105.0])])
def test_decode_refuses_float_and_bool_ids_instead_of_truncating(ids):
    tok = BPETokenizer()
    with pytest.raises(TypeError, match=r"ids\[0\] must be an integer token id"):
        tok.decode(ids)
    assert tok.decode([np.int64(72), torch.tensor(105)]) == "Hi"  # integer types of NumPy and PyTorch are fine


def test_min_score_nan_is_refused_rather_than_keeping_weak_evidence():
    with pytest.raises(ValueError, match="min_score must be a number, got nan"):
        plan_context(200, "", "Why?", 10, evidence=[Evidence("Weak.", 0.01)], min_score=float("nan"))


def test_evaluate_reference_runs_on_the_models_device(monkeypatch):
    from utils import pretraining

    seen = {}

    class Recorder:
        def __init__(self, model, config, get_batch, device=None):
            seen["device"] = torch.device(device)

        def evaluate(self):
            return 0.0

    monkeypatch.setattr(pretraining, "Trainer", Recorder)
    model = torch.nn.Linear(2, 2, device="meta")  # stands in for a model on a GPU: not on the CPU
    pretraining.evaluate_reference(model)
    assert seen["device"] == torch.device("meta")
