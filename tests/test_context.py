"""Chapter 3: the budget planner, the cost formulas (checked by hand) and the long-context methods."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.attention import scaled_dot_product_attention
from utils.context_budget import Evidence, Turn, plan_context
from utils.context_cost import (
    GIB,
    GPT2_SMALL,
    LLAMA_STYLE_8B_GQA,
    LLAMA_STYLE_8B_MHA,
    MIB,
    ModelShape,
    attention_flops,
    attention_score_bytes,
    dense_flops_per_token,
    kv_cache_bytes,
)
from utils.course_tokenizers import course_tokenizer
from utils.long_context import causal_mask, interpolate_positions, linear_attention, sliding_window_mask

TOK = course_tokenizer()
SYSTEM = "You are a helpful tea expert. Answer briefly and cite the evidence."
QUESTION = "Is spring a good time to buy pu'er in Yunnan?"
HISTORY = [Turn("user", "I am planning a trip to Yunnan in spring. Which teas should I try while I am there?"),
           Turn("assistant", "Pu'er is the famous one. Dian hong, a black tea with a malty taste, is also from "
                             "Yunnan, and so are several white teas made from the same large-leaf plants."),
           Turn("user", "How is pu'er made?"),
           Turn("assistant", "The leaves are withered, pan-fired, rolled and sun-dried. Raw pu'er is then pressed "
                             "into cakes that age slowly; ripe pu'er is fermented in piles for weeks first.")]
EVIDENCE = [Evidence("Pu'er tea comes from Yunnan and is pressed into cakes that age for years.", 0.91, "encyclopedia"),
            Evidence("Green tea is heated quickly after picking to stop oxidation.", 0.55, "basics"),
            Evidence("The Boston Tea Party was a protest against a tax on tea in 1773.", 0.12, "history"),
            Evidence("Yunnan's tea markets are busiest in spring, when the first flush is picked.", 0.78, "guide")]


# --- the course tokenizer -------------------------------------------------------------------------

def test_course_tokenizer_ships_and_round_trips():
    assert TOK.vocab_size == 4096 and set(TOK.special_tokens) == {"<|endoftext|>", "<|user|>", "<|assistant|>"}
    for s in [QUESTION, "茶最初是一种药。", "🍵 e\u0301"]:
        assert TOK.decode(TOK.encode(s)) == s


# --- planner ----------------------------------------------------------------------------------------

def test_everything_fits_in_a_large_window():
    plan = plan_context(2000, SYSTEM, QUESTION, 200, HISTORY, EVIDENCE)
    assert all(i.action == "kept" for i in plan.items)
    # prompt_tokens counts the assembled prompt; here the parts' own counts happen to add up to it
    assert plan.prompt_tokens == len(TOK.encode(plan.prompt(), allowed_special="none")) == plan.parts_tokens
    assert plan.prompt().startswith("System:") and plan.prompt().rstrip().endswith(QUESTION)


def test_ranked_evidence_threshold_and_newest_history_first():
    plan = plan_context(230, SYSTEM, QUESTION, 60, HISTORY, EVIDENCE, min_score=0.3)
    actions = {i.label: i.action for i in plan.items}
    assert actions["history"] == "dropped" and "min_score" in next(i.reason for i in plan.items if i.label == "history")
    assert actions["encyclopedia"] == "kept"  # the most relevant chunk goes in first
    kept_turns = [i.label for i in plan.kept("history")]
    dropped_turns = [i.label for i in plan.items if i.kind == "history" and i.action == "dropped"]
    if kept_turns and dropped_turns:  # any kept turn is newer than every dropped turn
        assert min(int(t.split()[1]) for t in kept_turns) > max(int(t.split()[1]) for t in dropped_turns)


def test_summarise_replaces_old_turns():
    full = plan_context(290, SYSTEM, QUESTION, 40, HISTORY, EVIDENCE[:1], history_strategy="drop")
    plan = plan_context(290, SYSTEM, QUESTION, 40, HISTORY, EVIDENCE[:1], history_strategy="summarise")
    summarised = [i for i in plan.items if i.action == "summarised"]
    assert summarised and plan.kept("summary")
    assert any(i.action == "dropped" for i in full.items)  # the same budget without summaries loses turns
    assert plan.prompt().index("Summary of earlier conversation") < plan.prompt().index("Evidence")
    # a summary of the most recent left-out turns is tried before giving up on all of them
    partial = plan_context(280, SYSTEM, QUESTION, 40, HISTORY, EVIDENCE[:1], history_strategy="summarise")
    assert [i.action for i in partial.items if i.kind == "history"][:2] == ["dropped", "summarised"]


@settings(max_examples=60, deadline=None)
@given(window=st.integers(150, 500), reserve=st.integers(0, 80))
def test_summarising_never_keeps_fewer_turns_than_dropping(window, reserve):
    try:
        drop = plan_context(window, SYSTEM, QUESTION, reserve, HISTORY, EVIDENCE[:2])
    except ValueError:
        return
    summ = plan_context(window, SYSTEM, QUESTION, reserve, HISTORY, EVIDENCE[:2], history_strategy="summarise")
    assert {i.label for i in drop.kept("history")} <= {i.label for i in summ.kept("history")}


def test_best_evidence_sits_next_to_the_question_and_report_follows_the_prompt():
    plan = plan_context(2000, SYSTEM, QUESTION, 100, HISTORY, EVIDENCE)
    order = [i.label for i in plan.in_prompt_order() if i.kind == "evidence"]
    assert order == ["history", "basics", "guide", "encyclopedia"]  # least relevant first
    prompt = plan.prompt()
    assert prompt.index("(encyclopedia)") > prompt.index("(guide)") > prompt.index("(basics)")
    body = plan.report().split("in the prompt, in order:\n")[1]
    labels = [line.split()[2] for line in body.splitlines() if line.startswith("  ")]
    assert labels[:2] == ["system", "turn"] and labels[-1] == "question"


@settings(max_examples=80, deadline=None)
@given(window=st.integers(60, 600), reserve=st.integers(0, 200), min_score=st.floats(0, 1),
       cap=st.one_of(st.none(), st.integers(0, 300)), strategy=st.sampled_from(["drop", "summarise"]))
def test_invariants(window, reserve, min_score, cap, strategy):
    try:
        plan = plan_context(window, SYSTEM, QUESTION, reserve, HISTORY, EVIDENCE, min_score=min_score,
                            max_evidence_tokens=cap, history_strategy=strategy)
    except ValueError as e:
        assert "impossible budget" in str(e)
        return
    assert plan.prompt_tokens + reserve <= window  # never eats the answer reserve
    assert plan.kept("question") and plan.kept("system")  # never drops the question
    assert all(i.tokens == 0 for i in plan.items if i.kind == "evidence" and i.original_tokens and
               EVIDENCE[[e.source for e in EVIDENCE].index(i.label)].score < min_score)
    if cap is not None:
        assert sum(i.tokens for i in plan.kept("evidence")) <= cap


def test_impossible_budget_and_bad_arguments():
    with pytest.raises(ValueError, match=r"impossible budget: system prompt \(\d+\) \+ question \(\d+\) \+ "
                                         r"answer_reserve \(500\) = \d+ tokens > window \(400\)"):
        plan_context(400, SYSTEM, QUESTION, 500)
    with pytest.raises(ValueError, match="question must not be empty"):
        plan_context(400, SYSTEM, "  ", 10)
    with pytest.raises(ValueError, match="answer_reserve must be an integer >= 0, got -1"):
        plan_context(400, SYSTEM, QUESTION, -1)
    with pytest.raises(ValueError, match="history_strategy must be 'drop' or 'summarise'"):
        plan_context(400, SYSTEM, QUESTION, 10, history_strategy="forget")
    with pytest.raises(ValueError, match=r"evidence\[0\].score must be a finite number, got nan"):
        plan_context(400, SYSTEM, QUESTION, 10, evidence=[Evidence("junk", float("nan"))])
    with pytest.raises(ValueError, match=r"history\[0\] must be a Turn"):
        plan_context(400, SYSTEM, QUESTION, 10, history=["hello"])
    assert plan_context(np.int64(400), SYSTEM, QUESTION, np.int64(10)).window == 400
    # a chunk far longer than the window is cut, never allowed to eat the reserve
    long = plan_context(200, SYSTEM, QUESTION, 50, evidence=[Evidence("tea " * 2000, 0.9)])
    assert long.prompt_tokens + 50 <= 200 and long.kept("evidence")[0].action == "cut"


# --- cost formulas, by hand --------------------------------------------------------------------------

def test_kv_cache_by_hand():
    # GPT-2 small, 1,024 tokens, fp16: 2 * 12 layers * 12 heads * 64 * 1024 * 2 bytes
    assert kv_cache_bytes(GPT2_SMALL, 1024) == 2 * 12 * 12 * 64 * 1024 * 2 == 36 * MIB
    # Llama-style 8B at 8,192 tokens: GQA with 8 KV heads is 1 GiB, MHA with 32 is 4 GiB
    assert kv_cache_bytes(LLAMA_STYLE_8B_GQA, 8192) == 2 * 32 * 8 * 128 * 8192 * 2 == GIB
    assert kv_cache_bytes(LLAMA_STYLE_8B_MHA, 8192) == 4 * GIB
    assert kv_cache_bytes(GPT2_SMALL, 100, bytes_per_value=4, batch=3) == 2 * 12 * 12 * 64 * 100 * 4 * 3


def test_attention_flops_by_hand_and_quadratic():
    assert attention_flops(GPT2_SMALL, 1024) == 4 * 1024**2 * 64 * 12 * 12
    assert attention_flops(GPT2_SMALL, 2048) == 4 * attention_flops(GPT2_SMALL, 1024)
    assert dense_flops_per_token(GPT2_SMALL) == 2 * 12 * 12 * 768**2
    assert attention_score_bytes(GPT2_SMALL, 1024) == 12 * 1024**2 * 2 == 24 * MIB


def test_cost_bad_input():
    with pytest.raises(ValueError, match="n_tokens must be an integer >= 0, got -5"):
        kv_cache_bytes(GPT2_SMALL, -5)
    with pytest.raises(ValueError, match="bytes_per_value must be"):
        kv_cache_bytes(GPT2_SMALL, 5, bytes_per_value=3)
    with pytest.raises(ValueError, match=r"n_heads \(12\) must be a multiple of n_kv_heads \(5\)"):
        ModelShape("bad", 1, 12, 5, 64, 10)


# --- long-context methods ----------------------------------------------------------------------------

def test_masks():
    np.testing.assert_array_equal(causal_mask(3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    m = sliding_window_mask(6, 3)
    assert m.sum(axis=1).tolist() == [1, 2, 3, 3, 3, 3]
    np.testing.assert_array_equal(sliding_window_mask(6, 6), causal_mask(6))
    with pytest.raises(ValueError, match="window must be an integer >= 1, got 0"):
        sliding_window_mask(4, 0)


def test_sliding_window_attention_matches_torch_sdpa_with_the_same_mask():
    import torch

    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(3, 10, 4))
    mask = sliding_window_mask(10, 3)
    ours = scaled_dot_product_attention(Q, K, V, mask)
    sdpa = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(a) for a in (Q, K, V)),
                                                            attn_mask=torch.tensor(mask))
    np.testing.assert_allclose(ours, sdpa.numpy(), atol=1e-12)


def test_linear_attention_associativity():
    rng = np.random.default_rng(1)
    Q, K, V = rng.normal(size=(3, 64, 8))
    fast, slow = linear_attention(Q, K, V), linear_attention(Q, K, V, order="quadratic")
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    # and by hand for row 0
    phi = lambda x: np.where(x > 0, x + 1, np.exp(x))
    w = phi(Q[0]) @ phi(K).T
    np.testing.assert_allclose(fast[0], w @ V / w.sum(), atol=1e-12)


def test_linear_attention_flops_by_hand():
    from utils.long_context import linear_attention_flops

    assert linear_attention_flops(1000, 16, 16, "quadratic") == 2 * 1000**2 * 16 * 2 + 1000**2
    assert linear_attention_flops(1000, 16, 16, "linear") == 4 * 1000 * 16 * 16 + 2 * 1000 * 16
    assert linear_attention_flops(2000, 16, 16, "quadratic") > 3.9 * linear_attention_flops(1000, 16, 16, "quadratic")
    assert linear_attention_flops(2000, 16, 16, "linear") == 2 * linear_attention_flops(1000, 16, 16, "linear")


def test_position_interpolation():
    np.testing.assert_array_equal(interpolate_positions(4, 8), [0, 1, 2, 3])
    pos = interpolate_positions(4096, 2048)
    assert pos.max() < 2048 and pos[1] == 0.5 and len(pos) == 4096


def test_chunker_and_toy_retriever():
    from utils.context_budget import chunk_text, overlap_score
    from utils.corpus import parallel_text

    doc = "\n\n".join(parallel_text("en"))
    chunks = chunk_text(doc, 60, TOK)
    assert all(len(TOK.encode(c)) <= 60 for c in chunks)
    assert " ".join(chunks).replace(" ", "") == doc.replace("\n\n", "").replace(" ", "")  # nothing lost
    assert overlap_score("When did tea reach Europe?", "Tea reached Europe in 1610.") == 1.0
    assert overlap_score("When did tea reach Europe?", "Green tea is heated quickly.") == 0.0
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1"):
        chunk_text(doc, 0, TOK)


def test_global_tokens_in_a_sliding_window():
    m = sliding_window_mask(6, 2, n_global=1)
    assert m[:, 0].all()  # every query sees the global token
    assert not m[5, 2] and m[5, 4]  # others stay local
    assert not np.any(m & ~causal_mask(6))  # still causal
