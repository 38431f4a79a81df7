"""Chapter 12's groundwork: in-context-learning batches, few-shot scoring, attention patterns and induction scores."""

import random

import pytest
import torch

from utils.icl import ICLBatches, attention_patterns, few_shot_accuracy, induction_scores
from utils.model import GPT, GPTConfig
from utils.pretraining import world_tokenizer
from utils.tiny_world import World


@pytest.fixture(scope="module")
def tok():
    return world_tokenizer()


def tiny(vocab, position="learned"):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=64, vocab_size=vocab, n_layer=2, n_head=2, n_embd=32, position=position)).eval()


def test_batches_mix_three_kinds_of_rows(tok):
    world = World(0)
    data = ICLBatches(world, tok, mix={"world": 2, "few_shot": 3, "repeat": 2})
    x, y = data.get_batch("train", 0)
    assert x.shape[0] == 7 and x.shape == y.shape
    assert torch.equal(x, data.get_batch("train", 0)[0]) and not torch.equal(x, data.get_batch("train", 1)[0])
    few = tok.decode(x[2].tolist()) + tok.decode([y[2][(y[2] != -100).nonzero().max()].item()])
    assert few.count(" ->") >= 2 and few.startswith("<|endoftext|>")
    row, target = data.repeat_row(random.Random(0))
    n = len(row) // 2  # row = [eot] + seq + seq[:-1]
    assert row[1 : n + 1] == row[n + 1 :] + [target[-1]] and target[: n + 1] == [-100] * (n + 1)
    assert target[n + 1 :] == row[n + 2 :] + [target[-1]]  # loss on the repeat after its first token
    first_special = min(tok.special_tokens.values())  # random tokens are never special tokens (300 rows, ~4000 draws)
    assert all(max(data.repeat_row(random.Random(i))[0][1:]) < first_special for i in range(300))
    with pytest.raises(ValueError, match="mix must give"):
        ICLBatches(world, tok, mix={"world": 1})


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_attention_patterns_reproduce_the_model(position):
    model = tiny(50, position)
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    att = attention_patterns(model, idx)
    assert att.shape == (2, 2, 2, 12, 12)
    assert torch.allclose(att.sum(-1), torch.ones(2, 2, 2, 12)) and float(att.triu(1).abs().max()) == 0.0
    block = model.transformer.h[0]  # the first layer's output is its weights applied to its values
    x = block.ln_1(model.transformer.wte(idx) + (model.transformer.wpe(torch.arange(12)) if position == "learned" else 0))
    _, _, v = block.attn.c_attn(x).split(32, dim=2)
    v = v.view(2, 12, 2, 16).transpose(1, 2)
    expected = block.attn(x, torch.arange(12))
    got = block.attn.c_proj((att[0] @ v).transpose(1, 2).reshape(2, 12, 32))
    assert torch.allclose(got, expected, atol=1e-5)


def test_induction_score_finds_a_planted_induction_head(monkeypatch):
    import utils.icl as icl

    model = tiny(50)
    length, batch = 10, 3

    def planted(model, idx):  # layer 0 head 1 attends exactly to the token after the first occurrence
        T = idx.shape[1]
        att = torch.full((2, idx.shape[0], 2, T, T), 0.0)
        att[..., 0] = 1.0
        for t in range(length, 2 * length):
            att[0, :, 1, t, :] = 0.0
            att[0, :, 1, t, t - length + 1] = 1.0
        return att

    monkeypatch.setattr(icl, "attention_patterns", planted)
    scores = icl.induction_scores(model, length=length, batch=batch)
    assert scores.shape == (2, 2) and scores[0, 1] == 1.0 and float(scores.sum()) == 1.0


def test_few_shot_accuracy(tok):
    model = tiny(tok.vocab_size)
    world = World(0)
    assert few_shot_accuracy(model, world, tok, "capital", 2, n=3) == 0.0  # a random model
    with pytest.raises(ValueError, match="n must be"):
        few_shot_accuracy(model, world, tok, "capital", 2, n=0)
    real = induction_scores(model, length=8, batch=2, token_range=(0, 509))
    assert real.shape == (2, 2) and float(real.max()) < 0.5
    with pytest.raises(ValueError, match="token_range"):
        induction_scores(model, token_range=(0, 10_000))


def test_task_posterior_sharpens_and_rules_out_wrong_kinds():
    from utils.icl import task_posterior

    world = World(0)
    countries = world.subjects("country")
    examples = [(s, world.facts("country", s)["capital"]) for s in countries[:3]]
    prior = task_posterior(world, [])
    assert all(abs(p - 0.25) < 1e-12 for p in prior.values())
    one, three = task_posterior(world, examples[:1]), task_posterior(world, examples)
    assert one["job"] == one["home"] == 0.0  # a country is never asked for a job
    assert 0.5 < one["capital"] < three["capital"] < 1.0
    assert abs(sum(three.values()) - 1) < 1e-12
    with pytest.raises(ValueError, match="noise"):
        task_posterior(world, examples, noise=0.0)


def test_answer_probabilities_and_zero_shot_on_a_random_model(tok):
    from utils.icl import answer_probabilities, relation_lines, zero_shot_accuracy

    world = World(0)
    model = tiny(tok.vocab_size)
    probs = answer_probabilities(model, world, tok, "job", 2, n=2)
    assert set(probs) == {"job", "home"} and abs(sum(probs.values()) - 1) < 1e-6
    people = world.subjects("person")[:3]
    rows = relation_lines(world, tok, "job", people)
    assert tok.decode(rows[0]) == f"<|endoftext|>{people[0]} -> {world.facts('person', people[0])['job']}\n"
    assert zero_shot_accuracy(model, world, tok, "job", people) == 0.0


def test_fine_tuning_on_a_relation_changes_weights_and_counts_flops(tok):
    from dataclasses import replace

    from utils.icl import FINETUNE_TRAIN, finetune_on_relation

    world = World(0)
    model = tiny(tok.vocab_size)
    before = [p.detach().clone() for p in model.parameters()]
    cost = finetune_on_relation(model, world, tok, "job", world.subjects("person")[:4],
                                replace(FINETUNE_TRAIN, max_steps=2, warmup_steps=1, eval_every=2), batch_size=2)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert cost["flops"] == 6 * model.num_params(non_embedding=False) * cost["tokens"] and cost["tokens"] > 0


def test_one_linear_attention_layer_is_one_gradient_descent_step():
    import numpy as np

    from utils.icl_gd import gd_step_prediction, linear_self_attention, lsa_gd_weights, regression_prompt, train_lsa

    rng = np.random.default_rng(0)
    for d_in, d_out, n, lr in [(3, 1, 10, 0.5), (4, 2, 7, 0.1)]:
        X, Y, x_q, _ = regression_prompt(rng, n, d_in, d_out)
        E = np.vstack([np.hstack([X, Y]), np.hstack([x_q, np.zeros(d_out)])])
        out = linear_self_attention(E, *lsa_gd_weights(d_in, d_out, lr))
        assert np.allclose(out[d_in:], gd_step_prediction(X, Y, x_q, lr))
        assert np.allclose(out[:d_in], x_q)  # the x part of the query passes through
        W = rng.normal(size=(d_out, d_in))  # from another start, the same step as explicit gradient descent
        grad = (X @ W.T - Y).T @ X / n
        assert np.allclose(gd_step_prediction(X, Y, x_q, lr, W0=W), (W - lr * grad) @ x_q)
    (W_K, W_Q, W_V), losses = train_lsa(d_in=2, n=8, steps=300, seed=0)
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])
    with pytest.raises(ValueError, match="T >= 2"):
        linear_self_attention(np.zeros((1, 3)), W_K, W_Q, W_V)


def test_the_stored_induction_model_has_its_head_and_its_curve():
    from utils.icl import INDUCTION_CONFIG, INDUCTION_TRAIN, load_induction_model

    model, curve = load_induction_model()
    assert model.config == INDUCTION_CONFIG and curve[-1]["step"] == INDUCTION_TRAIN.max_steps
    scores = induction_scores(model, length=24, batch=8, token_range=(1, INDUCTION_CONFIG.vocab_size))
    assert float(scores.max()) == pytest.approx(curve[-1]["score"], abs=0.02)  # the weights are the curve's end
    assert float(scores.max()) > 0.6 and int(scores.argmax()) // scores.shape[1] == 1  # in layer 1
    plateau_end = max(c["step"] for c in curve if c["loss"] > 3.5)
    assert plateau_end >= 400 and min(c["step"] for c in curve if c["loss"] < 1.0) - plateau_end <= 400
