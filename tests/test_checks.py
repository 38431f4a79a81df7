"""The chapter-1 checks pass the reference, and fail typical mistakes with the promised hint."""

import numpy as np
import pytest

from utils import bpe as B
from utils import sampling as R
from utils.checks import Question, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, questions_of


def run(check, *args):
    check(*args)
    return check.last_record


def passes(check, *args):
    record = run(check, *args)
    assert record["passed"], record["message"]
    assert record["points"] == record["max_points"] > 0


def fails_with(check, hint, *args):
    record = run(check, *args)
    assert not record["passed"] and record["points"] == 0
    assert hint in record["message"], record["message"]


def test_question_registry():
    qs = questions_of(ch01)
    assert [q.id for q in qs] == [f"q{i}" for i in range(1, 11)]
    assert all(isinstance(q, Question) and q.points >= 1 for q in qs)
    assert sum(q.points for q in qs) == 15


def test_reference_passes_every_check():
    passes(ch01.conditional_probability, 3 / 8)
    passes(ch01.softmax, R.softmax)
    passes(ch01.lowered_logit, R.softmax([2.2, 2.0, 0.5])[0])
    passes(ch01.apply_temperature, R.apply_temperature)
    passes(ch01.extreme_temperatures, R.next_token_probs([4, 2, .5], 0.1)[0], R.next_token_probs([4, 2, .5], 5.0)[0])
    passes(ch01.top_k_filter, R.top_k_filter)
    passes(ch01.top_p_filter, R.top_p_filter)
    passes(ch01.cross_entropy, R.cross_entropy)
    passes(ch01.next_token_probs, R.next_token_probs)
    passes(ch01.sample_next, R.sample_next)


def naive_softmax(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def unnormalised_probs(logits, temperature=1.0, top_k=None, top_p=None):
    return np.exp(R.filter_logits(logits, temperature, top_k, top_p))


def top_p_before_temperature(logits, temperature=1.0, top_k=None, top_p=None):
    return R.softmax(R.apply_temperature(R.top_p_filter(logits, top_p), temperature))


def top_p_strict(logits, p):  # stops *before* the token that reaches p
    probs = R.softmax(logits)
    order = np.argsort(-probs)
    keep = np.cumsum(probs[order]) < p - 1e-9
    keep[0] = True
    mask = np.zeros_like(keep)
    mask[order] = keep
    return np.where(mask, logits, -np.inf)


def top_p_no_ties(logits, p):  # right set size, but drops tokens tied with the last kept one
    probs = R.softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    keep_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs < p - 1e-6
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)


@pytest.mark.parametrize("check,wrong,hint", [
    (ch01.conditional_probability, 3 / 14, "P(tennis and football)"),
    (ch01.conditional_probability, ..., "not answered yet"),
    (ch01.softmax, naive_softmax, "overflow for logits of 1000"),
    (ch01.softmax, lambda x: np.exp(x), "probabilities sum to"),
    (ch01.softmax, lambda x: None, "forget `return`"),
    (ch01.apply_temperature, lambda z, t: np.asarray(z) * t, "you multiplied by T"),
    (ch01.apply_temperature, lambda z, t: np.asarray(z) / t, "should raise ValueError"),
    (ch01.top_k_filter, lambda z, k: np.where(z >= np.sort(z)[-k], z, 0.0), "set them to -inf"),
    (ch01.top_k_filter, lambda z, k: z, "kept 5 tokens with k=2"),
    (ch01.top_p_filter, top_p_strict, "you stop one token too early"),
    (ch01.top_p_filter, lambda z, p: R.softmax(R.top_p_filter(z, p)), "not probabilities"),
    (ch01.top_p_filter, top_p_no_ties, "tied with the last kept one are missing"),
    (ch01.cross_entropy, lambda z, t: float(np.log(R.softmax(z)[t])), "wrong sign"),
    (ch01.cross_entropy, lambda z, t: float(-np.log(naive_softmax(np.asarray(z))[t])), "stable log-softmax"),
    (ch01.next_token_probs, unnormalised_probs, "did you renormalise"),
    (ch01.next_token_probs, top_p_before_temperature, "top-p before temperature"),
    (ch01.sample_next, lambda z, rng=None, **kw: int(np.argmax(z)), "always pick the most likely"),
    (ch01.sample_next, lambda z, rng=None, **kw: int(np.random.default_rng().choice(len(z))), "same seed"),
])
def test_typical_mistakes_get_specific_hints(check, wrong, hint):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the wrong versions overflow on purpose
        fails_with(check, hint, wrong)


def test_stubs_and_crashes_are_reported_not_raised():
    def stub(x):
        raise NotImplementedError

    fails_with(ch01.softmax, "not implemented yet", stub)
    fails_with(ch01.softmax, "your code raised ZeroDivisionError", lambda x: 1 / 0)


def test_plain_python_prints_one_line(capsys):
    ch01.conditional_probability(0.375)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["PASS q1 (P(tennis | football) from counts), 1/1 points: 3/8 = 0.375"]


# --- chapter 2 ----------------------------------------------------------------------------------

def naive_bpe(text, n):
    return list(B.BPETokenizer(pattern=None).train(text, 256 + n).merges)


def test_chapter2_reference_passes():
    passes(ch02.count_pairs, B.count_pairs)
    passes(ch02.merge_pair, B.merge_pair)
    passes(ch02.train, naive_bpe)
    passes(ch02.encode, _encode_ref)
    passes(ch02.decode, lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8", "replace"))
    from utils.corpus import parallel_text
    from utils.course_tokenizers import english_and_mixed_tokenizers

    english_only, mixed = english_and_mixed_tokenizers()
    paragraph = parallel_text("zh")[-1]
    passes(ch02.chinese_ratio, len(english_only.encode(paragraph)) / len(mixed.encode(paragraph)))


def _encode_ref(text, merges):
    ids = list(text.encode("utf-8"))
    for k, pair in enumerate(merges):
        ids = B.merge_pair(ids, tuple(pair), 256 + k)
    return ids


def _no_early_stop(text, n):
    ids, merges = list(text.encode("utf-8")), []
    for k in range(n):
        counts = B.count_pairs(ids)
        if not counts:
            break
        pair = min(p for p, c in counts.items() if c == max(counts.values()))
        merges.append(pair)
        ids = B.merge_pair(ids, pair, 256 + k)
    return merges


def _encode_latest_first(text, merges):
    ids = list(text.encode("utf-8"))
    changed = True
    while changed:
        changed = False
        for k in reversed(range(len(merges))):
            new = B.merge_pair(ids, tuple(merges[k]), 256 + k)
            changed |= new != ids
            ids = new
    return ids


def train_largest_pair_on_tie(text, n):
    ids, merges = list(text.encode("utf-8")), []
    for k in range(n):
        counts = B.count_pairs(ids)
        if not counts or max(counts.values()) < 2:
            break
        pair = max(p for p, c in counts.items() if c == max(counts.values()))
        merges.append(pair)
        ids = B.merge_pair(ids, pair, 256 + k)
    return merges


@pytest.mark.parametrize("check,wrong,hint", [
    (ch02.count_pairs, lambda ids: {}, "count_pairs([1, 2, 3, 1, 2]) gave {}"),
    (ch02.merge_pair, lambda ids, pair, new: [new if (a, b) == pair else a for a, b in zip(ids, ids[1:] + [None])],
     "merge_pair([1, 2, 3, 1, 2], (1, 2), 4) gave"),
    (ch02.train, train_largest_pair_on_tie, "tie rule takes the smaller pair"),
    (ch02.encode, lambda text, merges: list(text.encode("utf-8")), "apply merges in the order"),
    (ch02.decode, lambda ids, vocab: "".join(vocab[i].decode("utf-8", "replace") for i in ids), "join the bytes"),
    (ch02.decode, lambda ids, vocab: b"".join(vocab[i] for i in ids), "return a str"),
    (ch02.chinese_ratio, 1.0, "count len(tok.encode(paragraph))"),
    (ch02.train, _no_early_stop, "stop when no pair"),
    (ch02.encode, lambda text, merges: _encode_latest_first(text, merges), "apply merges in the order"),
])
def test_chapter2_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


# --- chapter 3 ----------------------------------------------------------------------------------

def test_chapter3_reference_passes():
    from utils import context_cost as C
    from utils import long_context as L
    from utils.context_budget import plan_context

    passes(ch03.kv_cache_bytes, lambda layers, kv, hd, n, b: 2 * layers * kv * hd * n * b)
    passes(ch03.flops_ratio, C.attention_flops(C.LLAMA_STYLE_8B_GQA, 32768) / C.attention_flops(C.LLAMA_STYLE_8B_GQA, 8192))
    passes(ch03.sliding_window_mask, L.sliding_window_mask)
    passes(ch03.linear_attention, lambda fq, fk, V: (fq @ (fk.T @ V)) / (fq @ fk.sum(axis=0))[:, None])
    passes(ch03.interpolate, L.interpolate_positions)
    passes(ch03.rag_budget, plan_context(ch03.RAG_WINDOW, ch03.RAG_SYSTEM, ch03.RAG_QUESTION, 250, ch03.RAG_HISTORY,
                                         ch03.RAG_EVIDENCE, min_score=0.3, max_evidence_tokens=500,
                                         history_strategy="summarise"))


def _budget(system=ch03.RAG_SYSTEM, **kw):
    from utils.context_budget import plan_context

    args = dict(answer_reserve=250, history=ch03.RAG_HISTORY, evidence=ch03.RAG_EVIDENCE, min_score=0.3)
    args.update(kw)
    return plan_context(ch03.RAG_WINDOW, system, ch03.RAG_QUESTION, **args)


@pytest.mark.parametrize("check,wrong,hint", [
    (ch03.kv_cache_bytes, lambda layers, kv, hd, n, b: layers * kv * hd * n * b, "a key AND a value"),
    (ch03.flops_ratio, 4, "4x is the KV cache"),
    (ch03.sliding_window_mask, lambda n, w: np.abs(np.subtract.outer(np.arange(n), np.arange(n))) < w, "causal"),
    (ch03.sliding_window_mask, lambda n, w: np.tril(np.ones((n, n), bool)), "keys per row"),
    (ch03.linear_attention, lambda fq, fk, V: fq @ (fk.T @ V), "normalise"),
    (ch03.linear_attention, lambda fq, fk, V: ((w := fq @ fk.T) @ V) / w.sum(axis=1, keepdims=True), "(n, n) matrix"),
    (ch03.interpolate, lambda n, t: np.arange(n) * (t / n), "leave it unchanged"),
    (ch03.rag_budget, "plan", "should be the BudgetPlan"),
])
def test_chapter3_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


@pytest.mark.parametrize("kw,hint", [
    (dict(answer_reserve=50, max_evidence_tokens=500, history_strategy="summarise"), "at least 150"),
    (dict(min_score=0.0, answer_reserve=150), "below 0.3"),
    (dict(), "no conversation survived"),
    (dict(min_score=0.5, answer_reserve=150), "unused"),
    (dict(system="", max_evidence_tokens=500, history_strategy="summarise"), "system prompt is missing"),
])
def test_rag_budget_hints(kw, hint):
    fails_with(ch03.rag_budget, hint, _budget(**kw))


# --- chapter 4 ----------------------------------------------------------------------------------

def test_chapter4_reference_passes():
    from utils import positions as P

    passes(ch04.sinusoidal_encoding, P.sinusoidal_encoding)
    passes(ch04.shift_matrix, P.shift_matrix)
    passes(ch04.apply_rope, P.apply_rope)
    passes(ch04.position_parameters, 1024 * 768)
    passes(ch04.encoding_dot, float(P.sinusoidal_encoding(20, 64)[10] @ P.sinusoidal_encoding(20, 64)[13]))


def _swapped_pe(n, d):
    from utils import positions as P

    pe = P.sinusoidal_encoding(n, d)
    out = pe.copy()
    out[:, 0::2], out[:, 1::2] = pe[:, 1::2], pe[:, 0::2]
    return out


def _rope_wrong_sign(x, pos):
    from utils import positions as P

    return P.apply_rope(x, -np.asarray(pos, float)) * np.array([1, -1] * (np.shape(x)[-1] // 2)) * 1.1


@pytest.mark.parametrize("check,wrong,hint", [
    (ch04.sinusoidal_encoding, _swapped_pe, "sin and cos are swapped"),
    (ch04.shift_matrix, lambda k, d: __import__("utils.positions", fromlist=["x"]).shift_matrix(k, d).T, "transpose"),
    (ch04.shift_matrix, lambda k, d: np.eye(d), "each 2 x 2 block"),
    (ch04.apply_rope, _rope_wrong_sign, "keeps every vector's length"),
    (ch04.position_parameters, 1024, "number of positions"),
    (ch04.encoding_dot, 0.0, "PE(10) . PE(13)"),
])
def test_chapter4_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


# --- chapter 5 ----------------------------------------------------------------------------------

def test_chapter5_reference_passes():
    from utils import attention as A

    passes(ch05.attention, lambda Q, K, V, mask=None: A.scaled_dot_product_attention(Q, K, V, mask))
    _, w = A.scaled_dot_product_attention(ch05.X, ch05.X, ch05.X, return_weights=True)
    passes(ch05.worked_weight, w[2, 2])
    passes(ch05.score_variance, 256)
    passes(ch05.heads, lambda x, nh: x.reshape(x.shape[0], nh, -1).transpose(1, 0, 2),
           lambda p: p.transpose(1, 0, 2).reshape(p.shape[1], -1))
    passes(ch05.causal, A.causal_mask)


def _unscaled(Q, K, V, mask=None):
    from utils import attention as A

    d = Q.shape[1]
    return A.scaled_dot_product_attention(Q * d**0.25, K * d**0.25, V, mask)


@pytest.mark.parametrize("check,args,hint", [
    (ch05.attention, [_unscaled], "divide the scores by sqrt(d)"),
    (ch05.attention, [lambda Q, K, V, mask=None: __import__("utils.attention", fromlist=["x"])
                      .scaled_dot_product_attention(Q, K, V)], "the mask was ignored"),
    (ch05.score_variance, [1.0], "after dividing"),
    (ch05.heads, [lambda x, nh: x.reshape(nh, x.shape[0], -1), lambda p: p.reshape(p.shape[1], -1)], "columns 4..7"),
    (ch05.causal, [lambda n: np.triu(np.ones((n, n), bool))], "transpose"),
])
def test_chapter5_mistakes_get_hints(check, args, hint):
    fails_with(check, hint, *args)


# --- chapter 7 ----------------------------------------------------------------------------------

def test_chapter7_reference_passes():
    import torch

    from utils.model import GPT

    def count(cfg):
        with torch.device("meta"):
            return GPT(cfg).num_params(non_embedding=False)

    passes(ch07.count_params, count)
    C = 768
    passes(ch07.mlp_share, (8 * C * C + 5 * C) / (12 * C * C + 13 * C))
    passes(ch07.block_forward, lambda x, attn, mlp, l1, l2: (y := x + attn(l1(x))) + mlp(l2(y)))

    @torch.no_grad()
    def greedy(model, idx, n):
        for _ in range(n):
            idx = torch.cat([idx, model(idx)[0][:, -1].argmax(-1, keepdim=True)], 1)
        return idx

    passes(ch07.generate_greedy, greedy)


def _greedy_last_token_only(model, idx, n):
    import torch

    with torch.no_grad():
        for _ in range(n):
            idx = torch.cat([idx, model(idx[:, -1:])[0][:, -1].argmax(-1, keepdim=True)], 1)
    return idx


@pytest.mark.parametrize("check,wrong,hint", [
    (ch07.count_params, lambda cfg: 0, "per block"),
    (ch07.mlp_share, 66.6, "not a percentage"),
    (ch07.block_forward, lambda x, attn, mlp, l1, l2: (h := l2(x + attn(l1(x)))) + mlp(h), "normalised stream"),
    (ch07.generate_greedy, lambda model, idx, n: __import__("torch").cat(
        [idx, model(idx)[0][:, 0].argmax(-1, keepdim=True).repeat(1, n)], 1), "LAST position"),
    (ch07.generate_greedy, lambda model, idx, n: __import__("torch").cat(
        [idx, model(idx)[0][:, -1].argmax(-1, keepdim=True).repeat(1, n)], 1), "LAST position"),
    (ch07.generate_greedy, _greedy_last_token_only, "LAST position"),
])
def test_chapter7_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


# --- chapter 6 ----------------------------------------------------------------------------------

def test_chapter6_reference_passes():
    from utils import ffn_memory as M

    passes(ch06.ffn_memory, M.ffn_as_memory)
    passes(ch06.top_units, M.top_units)
    passes(ch06.edit, M.edit_values)


def _edit_in_place(W2, units, a, delta):
    W2[units] += np.outer(a[units], delta) / (a[units] @ a[units])
    return W2


@pytest.mark.parametrize("check,wrong,hint", [
    (ch06.ffn_memory, lambda x, W1, b1, W2, b2: (x @ W1 + b1, (x @ W1 + b1) @ W2 + b2), "apply the GELU"),
    (ch06.ffn_memory, lambda x, W1, b1, W2, b2: (lambda a, o: (a, o - b2))(
        *__import__("utils.ffn_memory", fromlist=["x"]).ffn_as_memory(x, W1, b1, W2, b2)), "add the bias b2"),
    (ch06.top_units, lambda a, others, k: np.argsort(-a)[:k], "largest activation"),
    (ch06.edit, _edit_in_place, "in place"),
    (ch06.edit, lambda W2, units, a, delta: W2 + 0.01, "edit only the chosen units"),
    (ch06.edit, lambda W2, units, a, delta: (lambda n: (n.__setitem__(units[0], n[units[0]] + delta / a[units[0]]), n)[1])(
        W2.copy()), "not the smallest"),
])
def test_chapter6_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


def test_edit_values_rejects_silent_units():
    from utils.ffn_memory import edit_values

    with pytest.raises(ValueError, match="do not fire for this input"):
        edit_values(np.zeros((4, 2)), [0, 1], np.zeros(4), np.ones(2))


# --- chapter 8 ----------------------------------------------------------------------------------

def _ch08_train_step(clip=True, zero=True):
    import torch

    def step(model, optimizer, x, y, grad_clip):
        _, loss = model(x, y)
        if zero:
            optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if clip else 1e9)
        optimizer.step()
        return loss.item(), float(norm)
    return step


def test_chapter8_reference_passes():
    import math

    from utils.pretraining import pack_row, world_tokenizer
    from utils.tiny_world import World
    from utils.train import TrainConfig, lr_at

    passes(ch08.make_row, lambda s, bos, n: pack_row(s, bos, n)[:2])
    passes(ch08.next_token_loss, _next_token_loss)
    passes(ch08.learning_rate, lambda step, lr, mn, w, n: lr_at(step, TrainConfig(max_steps=n, lr=lr, min_lr=mn,
                                                                                  warmup_steps=w)))
    passes(ch08.sentence_entropy, lambda ps, ns: -sum(p * math.log(p) for p in ps) + sum(
        p * math.log(n) for p, n in zip(ps, ns)))
    passes(ch08.train_step, _ch08_train_step())
    passes(ch08.floor_perplexity, math.exp(World(0).entropy_per_token(world_tokenizer().encode_ordinary)))


def _next_token_loss(lg, t):  # the solution's way: log_softmax, gather, mask
    import torch

    keep = t != -100
    picked = torch.log_softmax(lg, -1).gather(-1, t.clamp(min=0)[..., None])[..., 0]
    return -(picked * keep).sum() / keep.sum()


def _row_padded_with_zero(s, bos, n):
    from utils.pretraining import pack_row

    x, y, _ = pack_row(s, bos, n)
    return x, [0 if v == -100 else v for v in y]


def _loss_over_all_positions(lg, t):
    import torch

    keep = t != -100
    nll = -torch.log_softmax(lg, -1).gather(-1, t.clamp(min=0)[..., None])[..., 0]
    return (nll * keep).sum() / t.numel()


@pytest.mark.parametrize("check,wrong,hint", [
    (ch08.make_row, _row_padded_with_zero, "pad y with -100"),
    (ch08.make_row, lambda s, bos, n: ([t for x in s for t in x][:n], [t for x in s for t in x][1:n + 1]), "bos"),
    (ch08.next_token_loss, _loss_over_all_positions, "divided by all positions"),
    # the question forbids F.cross_entropy; before issue 18 every spelling of it passed
    (ch08.next_token_loss, lambda lg, t: __import__("torch").nn.functional.cross_entropy(
        lg.reshape(-1, lg.shape[-1]), t.reshape(-1)), "you called F.cross_entropy"),
    (ch08.next_token_loss, lambda lg, t: __import__("torch").nn.CrossEntropyLoss()(
        lg.reshape(-1, lg.shape[-1]), t.reshape(-1)), "you called F.cross_entropy"),
    (ch08.next_token_loss, lambda lg, t: _loss_over_all_positions(lg, t) * t.numel(), "that is the sum"),
    (ch08.learning_rate, lambda step, lr, mn, w, n: lr, "warmup"),
    (ch08.sentence_entropy, lambda ps, ns: (-sum(p * np.log(p) for p in ps) + sum(
        p * np.log(n) for p, n in zip(ps, ns))) / np.log(2), "bits"),
    (ch08.sentence_entropy, lambda ps, ns: -sum(p * np.log(p) for p in ps), "expected log of the number"),
    (ch08.train_step, _ch08_train_step(zero=False), "zero the gradients"),
    (ch08.train_step, _ch08_train_step(clip=False), "weights differ"),
    (ch08.floor_perplexity, 2 ** 0.5529058189428405, "not 2 to it"),
])
def test_chapter8_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


# --- chapter 9 ----------------------------------------------------------------------------------

def _sft_example(mask_first_answer=False, drop_eot_loss=False):
    def fn(prompt, reply, eot):
        ids = prompt + reply + [eot]
        x, y = ids[:-1], ids[1:]
        first = len(prompt) if mask_first_answer else len(prompt) - 1
        y = [-100 if i < first else t for i, t in enumerate(y)]
        if drop_eot_loss:
            y[-1] = -100
        return x, y
    return fn


def test_chapter9_reference_passes():
    import torch

    from utils.pretraining import world_tokenizer
    from utils.sft import encode_chat

    passes(ch09.sft_example, _sft_example())
    as_tensors = lambda p, r, e: tuple(torch.tensor(v)[None] for v in _sft_example()(p, r, e))  # noqa: E731
    passes(ch09.sft_example, as_tensors)  # a (1, T) tensor, as collate returns, is accepted too
    passes(ch09.relative_change, lambda b, a: ((torch.cat([x.flatten() for x in a]) - torch.cat(
        [x.flatten() for x in b])).norm() / torch.cat([x.flatten() for x in b]).norm()).item())
    ids, mask = encode_chat(world_tokenizer(), *ch09.EXAMPLE)
    passes(ch09.share_with_loss, sum(mask[1:]) / (len(ids) - 1))


@pytest.mark.parametrize("check,wrong,hint", [
    (ch09.sft_example, _sft_example(mask_first_answer=True), "LAST prompt position"),
    (ch09.sft_example, _sft_example(drop_eot_loss=True), "must carry loss"),
    (ch09.relative_change, lambda b, a: sum(((y - x).norm() / x.norm()).item() for x, y in zip(b, a)) / len(b),
     "flatten all parameters"),
    (ch09.share_with_loss, 0.9, "encode_chat's mask"),
    (ch09.sft_example, lambda p, r, e: 3, "return a pair"),
    (ch09.sft_example, lambda p, r, e: ((p + r + [e])[:-1], [-100 if t in p else t for t in (p + r + [e])[1:]]),
     "POSITION"),
])
def test_chapter9_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


def _dpo(pc, pr, rc, rr, beta):
    import torch.nn.functional as F

    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def _loo(scores, k):
    s = scores.view(-1, k)
    return (s - (s.sum(1, keepdim=True) - s) / (k - 1)).flatten()


def test_chapter10_reference_passes():
    import torch.nn.functional as F

    passes(ch10.bt_loss, lambda c, r: -F.logsigmoid(c - r).mean())
    passes(ch10.dpo, _dpo)
    passes(ch10.loo_advantages, _loo)
    passes(ch10.penalised_score, lambda r, lp, lr, b: r - b * (lp - lr))


@pytest.mark.parametrize("check,wrong,hint", [
    (ch10.bt_loss, lambda c, r: -__import__("torch").nn.functional.logsigmoid(r - c).mean(), "signs are swapped"),
    (ch10.bt_loss, lambda c, r: -__import__("torch").nn.functional.logsigmoid(c - r).sum(), "take the mean"),
    (ch10.bt_loss, lambda c, r: -__import__("torch").log(__import__("torch").sigmoid((c - r).float())).mean(),
     "F.logsigmoid"),
    (ch10.dpo, lambda pc, pr, rc, rr, b: _dpo(pc, pr, 0 * rc, 0 * rr, b), "reference model"),
    (ch10.dpo, lambda pc, pr, rc, rr, b: b * _dpo(pc, pr, rc, rr, 1.0), "INSIDE the sigmoid"),
    (ch10.dpo, lambda pc, pr, rc, rr, b: _dpo(pr, pc, rr, rc, b), "wrong sign"),
    (ch10.dpo, lambda pc, pr, rc, rr, b: _dpo(rc, rr, pc, pr, b), "wrong sign"),
    (ch10.dpo, lambda pc, pr, rc, rr, b: (_dpo(pc, pr, rc, rr, b), pc), "not a tuple"),
    (ch10.loo_advantages, lambda s, k: (s.view(-1, k) - s.view(-1, k).mean(1, keepdim=True)).flatten(),
     "OTHER k - 1"),
    (ch10.loo_advantages, lambda s, k: s - s.mean(), "SAME question"),
    (ch10.loo_advantages, lambda s, k: _loo(s, 4), "not for k=2"),
    (ch10.penalised_score, lambda r, lp, lr, b: r + b * (lp - lr), "SUBTRACTED"),
    (ch10.penalised_score, lambda r, lp, lr, b: None, "return"),
])
def test_chapter10_mistakes_get_hints(check, wrong, hint):
    fails_with(check, hint, wrong)


# -- chapters 11 to 13 ------------------------------------------------------------------------------
def _split(C, r):
    n = (C / (6 * r)) ** 0.5
    return n, r * n


def _best(params, C, sizes):
    D = C / (6 * sizes)
    return sizes[int(np.argmin(params["E"] + params["A"] / sizes ** params["alpha"] + params["B"] / D ** params["beta"]))]


def _loglog(x, y):
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(intercept)), -slope


def _posterior(prior, like):
    with np.errstate(divide="ignore"):
        logp = np.log(prior) + np.log(like).sum(0)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def _steps(a, b):
    cols, carry = [], 0
    for x, y in zip(str(a)[::-1], str(b)[::-1]):
        t = int(x) + int(y) + carry
        cols.append(f"{x}+{y}+{carry}={t}")
        carry = t // 10
    return ";".join(cols) + f";so {a + b}"


def test_chapters_11_to_13_references_pass():
    from utils.arithmetic import majority_vote
    from utils.checks import ch11, ch12, ch13
    from utils.tiny_world import parse_answer

    passes(ch11.chinchilla_split, _split)
    passes(ch11.fit_loglog, _loglog)
    passes(ch11.isoflop_best, _best)
    passes(ch11.exact_match, lambda p, n: p ** n, 0.5 ** (1 / 6))
    passes(ch12.few_shot_prompt, lambda ex, q: "\n".join([f"{s} -> {v}" for s, v in ex] + [f"{q} ->"]))
    passes(ch12.induction_score, lambda att, L: att[:, __import__("torch").arange(L, 2 * L - 1),
                                                      __import__("torch").arange(1, L)].mean(-1))
    passes(ch12.posterior, _posterior)
    passes(ch12.gd_attention, lambda X, Y, xq, lr: lr * (X @ xq) @ Y / len(X))
    passes(ch13.write_steps, _steps)
    passes(ch13.final_answer, parse_answer)
    passes(ch13.majority, majority_vote)
    passes(ch13.vote_accuracy, lambda s, t, k: sum(majority_vote(r[:k]) == x for r, x in zip(s, t)) / len(t))


def _ch(n):
    import importlib

    return importlib.import_module(f"utils.checks.ch{n}")


@pytest.mark.parametrize("name,wrong,hint", [
    ("11.chinchilla_split", lambda C, r: ((C / r) ** 0.5, r * (C / r) ** 0.5), "the 6 of C = 6 N D"),
    ("11.fit_loglog", lambda x, y: (_loglog(x, y)[0], -_loglog(x, y)[1]), "the sign of p"),
    ("11.fit_loglog", lambda x, y: (np.log(_loglog(x, y)[0]), _loglog(x, y)[1]), "not log k"),
    ("11.isoflop_best", lambda p, C, s: s[int(np.argmax(p["E"] + p["A"] / s ** p["alpha"]
                                                     + p["B"] / (C / (6 * s)) ** p["beta"]))], "HIGHEST"),
    ("11.exact_match", lambda p, n: p * n, "multiply"),
    ("12.few_shot_prompt", lambda ex, q: "\n".join([f"{s} -> {v}" for s, v in ex] + [f"{q} ->"]) + "\n", "right after"),
    ("12.induction_score", lambda att, L: att[:, __import__("torch").arange(L, 2 * L - 1),
                                              __import__("torch").arange(0, L - 1)].mean(-1), "AFTER it"),
    ("12.posterior", lambda prior, like: prior * like.prod(0), "normalise"),
    ("12.posterior", lambda prior, like: prior * like.prod(0) / max((prior * like.prod(0)).sum(), 1e-300), "underflow"),
    ("12.gd_attention", lambda X, Y, xq, lr: lr * (X @ xq) @ Y, "divide the sum by n"),
    ("12.gd_attention", lambda X, Y, xq, lr: -lr * (X @ xq) @ Y / len(X), "the sign"),
    ("13.write_steps", lambda a, b: _steps(a, b).replace("+0=", "=", 1), "carry in every column"),
    ("13.final_answer", lambda c: int(c.split(";")[0].split("=")[-1]) if "=" in c else None, "expected"),
    ("13.majority", lambda ans: max(set(ans), key=ans.count), "None"),
    ("13.majority", lambda ans: max(set(a for a in ans if a is not None) or [None],
                                    key=lambda a: (ans.count(a), a)), "seen first"),
    ("13.vote_accuracy", lambda s, t, k: sum(__import__("utils.arithmetic", fromlist=["x"]).majority_vote(r) == x
                                             for r, x in zip(s, t)) / len(t), "FIRST k"),
])
def test_chapters_11_to_13_mistakes_get_hints(name, wrong, hint):
    chapter, check = name.split(".")
    fails_with(getattr(_ch(chapter), check), hint, wrong)
