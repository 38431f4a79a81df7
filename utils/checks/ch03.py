"""Checks for the chapter 3 exercises: context budgets.

Usage in the notebook::

    from utils.checks import ch03 as check
    check.kv_cache_bytes(kv_cache_bytes)
"""

from __future__ import annotations

import numpy as np

from .. import context_cost as cost
from .. import long_context as ref
from ..context_budget import BudgetPlan, Evidence, Turn
from ..corpus import parallel_text
from . import Fail, as_number, call, question

QUESTIONS: dict = {}

# --- the request of question 6: a tea-history assistant with retrieval ----------------------------
_paragraphs = parallel_text("en")
_scores = [0.22, 0.35, 0.18, 0.27, 0.88, 0.81, 0.31, 0.12]  # a retriever's relevance for each paragraph
RAG_SYSTEM = ("You are a history assistant. Answer from the evidence only, cite the sources you use, "
              "and say when the evidence is not enough.")
RAG_QUESTION = "When and how did tea reach Europe, and why did Britain come to care so much about it?"
RAG_HISTORY = [
    Turn("user", "I am writing a short talk about the history of tea for my book club."),
    Turn("assistant", "Happy to help. Tea began as a medicine in southwest China and became an everyday drink "
                      "under the Tang dynasty, when Lu Yu wrote the first book about it."),
    Turn("user", "Good. What changed under the Song and Ming dynasties?"),
    Turn("assistant", "Under the Song, powdered tea whisked into foam was the fashion; under the Ming, loose "
                      "leaves steeped in a pot replaced pressed cakes, which changed teapots and cups."),
    Turn("user", "Great, that covers China. Now I need the European part of the story."),
]
RAG_EVIDENCE = [Evidence(text, score, f"essay paragraph {i + 1}") for i, (text, score) in
                enumerate(zip(_paragraphs, _scores))]
RAG_WINDOW = 1000


@question(QUESTIONS, "q1", "KV-cache size", points=1)
def kv_cache_bytes(fn):
    for shape in (cost.GPT2_SMALL, cost.LLAMA_STYLE_8B_GQA, cost.LLAMA_STYLE_8B_MHA):
        for n, b in [(1024, 2), (8192, 2), (100, 4)]:
            got = fn(shape.n_layers, shape.n_kv_heads, shape.head_dim, n, b)
            expected = cost.kv_cache_bytes(shape, n, bytes_per_value=b)
            if got == expected / 2:
                raise Fail("half the expected size: the cache holds a key AND a value for every token (factor 2)")
            if shape.n_kv_heads != shape.n_heads and got == expected * shape.n_heads // shape.n_kv_heads:
                raise Fail("too big for the GQA model: count key/value heads, not query heads")
            if got != expected:
                raise Fail(f"{shape.name}, {n} tokens, {b} bytes: got {got}, expected {expected} "
                           "(2 x layers x kv_heads x head_dim x tokens x bytes)")
    return "GPT-2 small at 1,024 tokens in fp16: 36 MiB"


@question(QUESTIONS, "q2", "attention FLOPs when the context quadruples", points=1)
def flops_ratio(ratio):
    ratio = as_number(ratio, "ratio")
    if abs(ratio - 4) < 1e-9:
        raise Fail("4x is the KV cache (linear in n); attention compares every token with every token (n^2)")
    if abs(ratio - 16) > 1e-9:
        raise Fail(f"got {ratio}; compare attention_flops at 32,768 and at 8,192 tokens")
    return "(32768 / 8192)^2 = 16"


@question(QUESTIONS, "q3", "sliding-window mask", points=2)
def sliding_window_mask(fn):
    for n, w in [(5, 2), (8, 3), (6, 6), (4, 1), (10, 20)]:
        got = np.asarray(fn(n, w))
        expected = ref.sliding_window_mask(n, w)
        if got.shape != (n, n):
            raise Fail(f"sliding_window_mask({n}, {w}) should have shape ({n}, {n}), got {got.shape}")
        got = got.astype(bool)
        if np.any(got & ~ref.causal_mask(n)):
            raise Fail("a query may not see future keys: keep the mask causal (j <= i)")
        if not np.array_equal(got, expected):
            per_row = got.sum(axis=1).tolist()
            raise Fail(f"sliding_window_mask({n}, {w}) has {per_row} keys per row, expected "
                       f"{expected.sum(axis=1).tolist()}: each query sees itself and the {w - 1} keys before it")
    return "causal, and at most w keys per query"


@question(QUESTIONS, "q4", "linear attention in O(n)", points=2)
def linear_attention(fn):
    rng = np.random.default_rng(3)
    for n, d, dv in [(7, 4, 3), (64, 8, 8), (300, 16, 5)]:
        Q, K, V = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(n, dv))
        fq, fk = ref.elu_feature_map(Q), ref.elu_feature_map(K)
        got = np.asarray(call(fn, fq, fk, V))
        expected = ref.linear_attention(Q, K, V)
        if got.shape != expected.shape:
            raise Fail(f"expected shape {expected.shape}, got {got.shape}")
        if np.allclose(got, fq @ (fk.T @ V)):
            raise Fail("the numerator is right; divide each row by phi(q_i) . sum_j phi(k_j) to normalise")
        if not np.allclose(got, expected):
            raise Fail("wrong values: compute phi(K)^T V (a d x d_v matrix) first, then multiply by phi(Q)")
    n = 200_000  # an (n, n) float matrix would need 320 GB
    fq, fk = ref.elu_feature_map(rng.normal(size=(n, 4))), ref.elu_feature_map(rng.normal(size=(n, 4)))
    try:
        got = np.asarray(fn(fq, fk, rng.normal(size=(n, 2))))
    except MemoryError:
        raise Fail("with n = 200,000 your code ran out of memory: it builds an (n, n) matrix; compute "
                   "phi(K)^T V first, whose size does not depend on n") from None
    if got.shape != (n, 2):
        raise Fail(f"with n = 200,000 the output should have shape ({n}, 2), got {got.shape}")
    return "normalised, and no (n, n) matrix at n = 200,000"


@question(QUESTIONS, "q5", "position interpolation", points=1)
def interpolate(fn):
    for n, train in [(4096, 2048), (3000, 1024), (512, 1024), (10, 10)]:
        got = np.asarray(fn(n, train), dtype=float)
        expected = ref.interpolate_positions(n, train)
        if got.shape != expected.shape:
            raise Fail(f"interpolate({n}, {train}) should return {n} positions, got shape {got.shape}")
        if not np.allclose(got, expected):
            if n <= train:
                raise Fail(f"a sequence of {n} tokens already fits in {train} trained positions: leave it unchanged")
            raise Fail(f"interpolate({n}, {train}): scale positions 0..{n - 1} by train_length / n_tokens")
    return "positions stay inside the trained range"


@question(QUESTIONS, "q6", "a 1,000-token RAG budget", points=3)
def rag_budget(plan):
    if not isinstance(plan, BudgetPlan):
        raise Fail(f"rag_plan should be the BudgetPlan that plan_context returns, got {type(plan).__name__}")
    if plan.window != RAG_WINDOW:
        raise Fail(f"the window must be {RAG_WINDOW} tokens, got {plan.window}")
    if plan.answer_reserve < 150:
        raise Fail(f"an answer reserve of {plan.answer_reserve} tokens leaves too little room for an answer that "
                   "cites sources; keep at least 150")
    if not plan.kept("question") or RAG_QUESTION not in plan.prompt():
        raise Fail("the question is missing from the prompt: did you pass RAG_QUESTION?")
    if RAG_SYSTEM not in plan.prompt():
        raise Fail("the system prompt is missing: pass RAG_SYSTEM; the application's instructions are not optional")
    kept = {i.label: i for i in plan.kept("evidence")}
    best = sorted(RAG_EVIDENCE, key=lambda e: -e.score)[:2]
    for ev in best:
        item = kept.get(ev.source)
        if item is None or item.action != "kept":
            raise Fail(f"{ev.source} (relevance {ev.score}) answers the question and must be kept whole")
    weak = [label for label, i in kept.items() if next(e.score for e in RAG_EVIDENCE if e.source == label) < 0.3]
    if weak:
        raise Fail(f"evidence with relevance below 0.3 is in the prompt ({weak}): set min_score to keep noise out")
    if not (plan.kept("history") or plan.kept("summary")):
        raise Fail("no conversation survived: the user's last turns explain what they need; cap the evidence or "
                   "summarise old turns")
    if plan.free_tokens > 150:
        raise Fail(f"{plan.free_tokens} tokens of the window are unused: spend them on evidence, history or the "
                   "answer reserve")
    return (f"{plan.prompt_tokens} + {plan.answer_reserve} reserve + {plan.free_tokens} free; "
            f"{len(kept)} chunk(s)")
