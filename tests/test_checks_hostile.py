"""The exercise checks under hostile answers (issue 18): fixtures survive answers that change their
inputs in place, no false PASS for answers that skip what the question asks, hints name the real
mistake, and a bug in a check is reported as the checker's, not as the learner's."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_checks import (
    _dpo,
    _encode_ref,
    _loo,
    _next_token_loss,
    _posterior,
    _split,
    _steps,
    fails_with,
    naive_bpe,
    passes,
    run,
)

from utils import bpe as B
from utils import sampling as R
from utils.checks import Fail, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12, ch13, question

# --- every check passes copies -------------------------------------------------------------------

def _vandalise(x):
    """Change an argument in place, as a careless (but correct) answer might: Q /= np.sqrt(d)."""
    if isinstance(x, np.ndarray) and x.flags.writeable and x.size:
        if x.dtype == bool:
            np.logical_not(x, out=x)
        else:
            x += 1
    elif isinstance(x, torch.Tensor) and not x.requires_grad and x.numel():
        with torch.no_grad():
            x.add_(1)
    elif isinstance(x, list):
        for v in x:
            _vandalise(v)
        x.append(None)
    elif isinstance(x, dict):
        for v in x.values():
            _vandalise(v)
        x["vandal"] = None
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        for f in dataclasses.fields(x):
            if isinstance(getattr(x, f.name), int) and not isinstance(getattr(x, f.name), bool):
                object.__setattr__(x, f.name, getattr(x, f.name) + 1)


def vandal(reference):
    """The reference answer, computed first and copied, then every argument changed in place."""
    def answer(*args, **kwargs):
        result = reference(*args, **kwargs)
        result = result.clone() if isinstance(result, torch.Tensor) else copy.deepcopy(result)  # clone keeps the graph
        for a in (*args, *kwargs.values()):
            _vandalise(a)
        return result
    return answer


def _fixtures(module) -> dict:
    """The module's data that checks read: arrays, tensors, lists, dicts and configs (deep copies)."""
    kinds = (np.ndarray, torch.Tensor, list, dict)
    return {name: copy.deepcopy(v) for name, v in vars(module).items()
            if name != "QUESTIONS" and not name.startswith("__")
            and (isinstance(v, kinds) or (dataclasses.is_dataclass(v) and not isinstance(v, type)))}


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _ch07_count(cfg):
    from utils.model import GPT

    with torch.device("meta"):
        return GPT(cfg).num_params(non_embedding=False)


@torch.no_grad()
def _ch07_greedy(model, idx, n):
    for _ in range(n):
        idx = torch.cat([idx, model(idx)[0][:, -1].argmax(-1, keepdim=True)], 1)
    return idx


def _ch08_step(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item(), float(norm)


def _ch09_example(prompt, reply, eot):
    ids = prompt + reply + [eot]
    return ids[:-1], [-100 if i < len(prompt) - 1 else t for i, t in enumerate(ids[1:])]


def _references():
    """(check, reference answers) for every question whose answer is code.

    Left out on purpose: ch02.merge_pair and ch06.edit, whose questions forbid changing the input
    and which therefore hand the learner's function the very list/array they then inspect."""
    from utils import attention as A
    from utils import ffn_memory as M
    from utils import long_context as L
    from utils import positions as P
    from utils.arithmetic import majority_vote
    from utils.pretraining import pack_row
    from utils.tiny_world import parse_answer
    from utils.train import TrainConfig, lr_at

    return [
        (ch01.softmax, [R.softmax]), (ch01.apply_temperature, [R.apply_temperature]),
        (ch01.top_k_filter, [R.top_k_filter]), (ch01.top_p_filter, [R.top_p_filter]),
        (ch01.cross_entropy, [R.cross_entropy]), (ch01.next_token_probs, [R.next_token_probs]),
        (ch01.sample_next, [R.sample_next]),
        (ch02.count_pairs, [B.count_pairs]), (ch02.train, [naive_bpe]), (ch02.encode, [_encode_ref]),
        (ch02.decode, [lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8", "replace")]),
        (ch03.kv_cache_bytes, [lambda layers, kv, hd, n, b: 2 * layers * kv * hd * n * b]),
        (ch03.sliding_window_mask, [L.sliding_window_mask]),
        (ch03.linear_attention, [lambda fq, fk, V: (fq @ (fk.T @ V)) / (fq @ fk.sum(axis=0))[:, None]]),
        (ch03.interpolate, [L.interpolate_positions]),
        (ch04.sinusoidal_encoding, [P.sinusoidal_encoding]), (ch04.shift_matrix, [P.shift_matrix]),
        (ch04.apply_rope, [P.apply_rope]),
        (ch05.attention, [lambda Q, K, V, mask=None: A.scaled_dot_product_attention(Q, K, V, mask)]),
        (ch05.heads, [lambda x, nh: x.reshape(x.shape[0], nh, -1).transpose(1, 0, 2).copy(),
                      lambda p: p.transpose(1, 0, 2).reshape(p.shape[1], -1).copy()]),
        (ch05.causal, [A.causal_mask]),
        (ch06.ffn_memory, [M.ffn_as_memory]), (ch06.top_units, [M.top_units]),
        (ch07.count_params, [_ch07_count]),
        (ch07.block_forward, [lambda x, attn, mlp, l1, l2: (y := x + attn(l1(x))) + mlp(l2(y))]),
        (ch07.generate_greedy, [_ch07_greedy]),
        (ch08.make_row, [lambda s, bos, n: pack_row(s, bos, n)[:2]]), (ch08.next_token_loss, [_next_token_loss]),
        (ch08.learning_rate, [lambda step, lr, mn, w, n: lr_at(step, TrainConfig(max_steps=n, lr=lr, min_lr=mn,
                                                                                 warmup_steps=w))]),
        (ch08.sentence_entropy, [lambda ps, ns: -sum(p * math.log(p) for p in ps) + sum(
            p * math.log(n) for p, n in zip(ps, ns))]),
        (ch08.train_step, [_ch08_step]),
        (ch09.sft_example, [_ch09_example]),
        (ch09.relative_change, [lambda b, a: ((torch.cat([x.flatten() for x in a]) - torch.cat(
            [x.flatten() for x in b])).norm() / torch.cat([x.flatten() for x in b]).norm()).item()]),
        (ch10.bt_loss, [lambda c, r: -F.logsigmoid(c - r).mean()]), (ch10.dpo, [_dpo]),
        (ch10.loo_advantages, [_loo]), (ch10.penalised_score, [lambda r, lp, lr, b: r - b * (lp - lr)]),
        (ch11.chinchilla_split, [_split]),
        (ch11.fit_loglog, [lambda x, y: (float(np.exp(np.polyfit(np.log(x), np.log(y), 1)[1])),
                                         -float(np.polyfit(np.log(x), np.log(y), 1)[0]))]),
        (ch11.isoflop_best, [lambda p, C, s: s[int(np.argmin(p["E"] + p["A"] / s ** p["alpha"]
                                                            + p["B"] / (C / (6 * s)) ** p["beta"]))]]),
        (ch11.exact_match, [lambda p, n: p ** n]),
        (ch12.few_shot_prompt, [lambda ex, q: "\n".join([f"{s} -> {v}" for s, v in ex] + [f"{q} ->"])]),
        (ch12.induction_score, [lambda att, L: att[:, torch.arange(L, 2 * L - 1), torch.arange(1, L)].mean(-1)]),
        (ch12.posterior, [_posterior]), (ch12.gd_attention, [lambda X, Y, xq, lr: lr * (X @ xq) @ Y / len(X)]),
        (ch13.write_steps, [_steps]), (ch13.final_answer, [parse_answer]), (ch13.majority, [majority_vote]),
        (ch13.vote_accuracy, [lambda s, t, k: sum(majority_vote(r[:k]) == x for r, x in zip(s, t)) / len(t)]),
    ]


REFERENCES = _references()


@pytest.mark.parametrize("check,answers", REFERENCES, ids=[f"{c.__module__[-4:]}.{c.__name__}" for c, _ in REFERENCES])
def test_an_answer_that_changes_its_inputs_passes_twice_and_leaves_the_fixtures_alone(check, answers):
    """Before issue 18, ch05 q1 and ch06 q1 handed their arrays over uncopied: `Q /= np.sqrt(d)` in a
    correct answer corrupted the fixture and the next, correct answer failed until a kernel restart."""
    import sys

    module = sys.modules[check.__module__]
    before = _fixtures(module)
    passes(check, *[vandal(a) for a in answers])
    passes(check, *answers)  # still passes: nothing the check reads was changed
    after = _fixtures(module)
    changed = [name for name in before if not _same(before[name], after[name])]
    assert not changed, f"{check.__name__} let the answer change {changed}"


# --- no false PASS -------------------------------------------------------------------------------

def _sampler_without_filters(logits, temperature=1.0, top_k=None, top_p=None, rng=None):
    """Samples at the right temperature but never passes top_k / top_p on."""
    probs = R.next_token_probs(logits, temperature)
    return int(rng.choice(len(probs), p=probs))


def test_ch01_sampler_that_ignores_the_filters_fails():
    fails_with(ch01.sample_next, "which the filter removes", _sampler_without_filters)


def test_ch10_dpo_without_a_gradient_fails():
    fails_with(ch10.dpo, "carries no gradient", lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, b).detach())
    fails_with(ch10.dpo, "carries no gradient", lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, b).item())
    # the same value computed from copies that were cut off from the graph
    fails_with(ch10.dpo, "carries no gradient",
               lambda pc, pr, rc, rr, b: _dpo(pc.detach(), pr.detach(), rc, rr, b))


# --- hints that name the real mistake ------------------------------------------------------------

def _top_p_inclusive(logits, p):
    """The off-by-one rule: keep while the cumulative sum INCLUDING the token is below p."""
    probs = R.softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    keep_sorted = np.cumsum(np.take_along_axis(probs, order, -1), axis=-1) < p
    keep_sorted[..., 0] = True
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)


def test_ch01_q7_off_by_one_is_named_not_called_a_tie_problem():
    """0.5 + 0.3 rounds below 0.8, so `cum < p` passed the first case and then got the tie hint."""
    record = run(ch01.top_p_filter, _top_p_inclusive)
    assert not record["passed"] and "one token too early" in record["message"], record["message"]
    assert "tied" not in record["message"]


def _probs_on_wrong_top_p(logits, temperature=1.0, top_k=None, top_p=None):
    """A correct pipeline built on the off-by-one top-p filter."""
    z = R.apply_temperature(logits, temperature)
    z = R.top_k_filter(z, top_k)
    return R.softmax(_top_p_inclusive(z, top_p) if top_p is not None else z)


def test_ch01_q9_blames_the_filter_not_the_order():
    record = run(ch01.next_token_probs, _probs_on_wrong_top_p)
    assert not record["passed"]
    assert "questions 6 and 7" in record["message"] and "order" not in record["message"], record["message"]


def _attention_scaled_by(width):
    def attention(Q, K, V, mask=None):
        scores = Q @ K.T / np.sqrt(width(Q, K, V))
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        w = np.exp(scores - scores.max(axis=1, keepdims=True))
        return (w / w.sum(axis=1, keepdims=True)) @ V
    return attention


@pytest.mark.parametrize("width,hint", [
    (lambda Q, K, V: V.shape[1], "width of V"),
    (lambda Q, K, V: Q.shape[0], "queries"),
    (lambda Q, K, V: K.shape[0], "keys ("),
])
def test_ch05_square_root_of_the_wrong_width_is_named(width, hint):
    record = run(ch05.attention, _attention_scaled_by(width))
    assert not record["passed"] and hint in record["message"], record["message"]
    assert "mask" not in record["message"]


def test_ch01_q10_blames_the_filters_not_the_sampler():
    """A correct sampler on top of a wrong top-p was told it always picks the most likely token."""
    def sampler(logits, temperature=1.0, top_k=None, top_p=None, rng=None):
        probs = _probs_on_wrong_top_p(logits, temperature, top_k, top_p)
        return int(rng.choice(len(probs), p=probs))

    record = run(ch01.sample_next, sampler)
    assert not record["passed"] and "question 9" in record["message"], record["message"]
    assert "always pick" not in record["message"]


def test_ch13_q4_count_instead_of_share_is_named_at_every_k():
    from utils.arithmetic import majority_vote

    fails_with(ch13.vote_accuracy, "NUMBER of questions",
               lambda s, t, k: sum(majority_vote(r[:k]) == x for r, x in zip(s, t)))


# --- whose error is it? ----------------------------------------------------------------------------

_TEST_QUESTIONS: dict = {}


@question(_TEST_QUESTIONS, "q1", "a check with a bug", points=1)
def _buggy_check(fn):
    fn(1.0)
    return {}["missing"]  # a KeyError in the check's own code


@question(_TEST_QUESTIONS, "q2", "a check without a bug", points=1)
def _sound_check(fn):
    if fn(np.ones(3)) is None:
        raise Fail("returned None")
    return "ok"


def _learner_raises(x):
    return np.log(x) + {}["typo"]  # the learner's KeyError


def test_an_error_in_the_check_is_the_checkers_not_the_learners():
    record = run(_buggy_check, lambda x: x)
    assert not record["passed"] and record.get("checker_error") is True
    assert "checker error" in record["message"] and "your code raised" not in record["message"]
    assert "test_checks_hostile.py" in record["message"]  # where the check broke


def test_an_error_in_the_learners_code_is_theirs_with_their_line():
    record = run(_sound_check, _learner_raises)
    assert not record["passed"] and "checker_error" not in record
    line = _learner_raises.__code__.co_firstlineno + 1
    assert record["message"] == f"your code raised KeyError: 'typo' (line {line})", record["message"]
    # an error inside NumPy called from the learner's code gives the learner's line, not NumPy's
    record = run(_sound_check, lambda x: np.reshape(x, (2, 2)))
    assert "your code raised ValueError" in record["message"] and "checker" not in record["message"]


@pytest.mark.parametrize("check,answer", [
    (ch01.conditional_probability, "3/8"), (ch05.worked_weight, "0.4"), (ch08.floor_perplexity, None),
    (ch03.flops_ratio, [16, 4]), (ch07.mlp_share, True),
])
def test_a_value_that_is_not_a_number_is_the_learners_mistake(check, answer):
    record = run(check, answer)
    assert not record["passed"] and "checker_error" not in record
    assert "should be a number" in record["message"], record["message"]
