"""RLHF and DPO training loops (chapter 10) on a tiny random model: shapes, masks, order, errors,
and that each loop moves what it should."""

import copy
import random

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.preference import dpo, preference_batch, reward_accuracy, sequence_logprob, train_reward_model
from utils.pretraining import world_tokenizer
from utils.rlhf import ExactAnswerReward, RLHFConfig, answer_kl, gold_score, greedy_answers, rlhf, sample_answers, score_batch
from utils.tiny_world import World


@pytest.fixture(scope="module")
def tok():
    return world_tokenizer()


@pytest.fixture(scope="module")
def world():
    return World(0)


def tiny_model(tok, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=64, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32)).eval()


def pairs_stream(world, seed=0, n=8):
    return lambda step: [world.preference_pair(random.Random(seed * 10_000 + step * n + i), style="short")
                         for i in range(n)]


def test_short_preference_pairs_and_all_questions(world):
    questions = world.questions()
    assert len(questions) == len(set(questions)) == 2 * len(world.countries) + 3 * len(world.people)
    truth = dict(questions)
    rng = random.Random(4)
    for _ in range(200):
        pair = world.preference_pair(rng, style="short")
        assert pair["chosen"] == truth[pair["prompt"]] and pair["rejected"] != pair["chosen"]
        if pair["reason"] == "false":  # the same answer with one fact changed
            assert len(pair["rejected"].split()) == len(pair["chosen"].split())
        else:
            assert pair["rejected"].count(" ") == 0 and pair["chosen"].endswith(pair["rejected"])
    # the style changes the wording only, not the random choices
    a, b = world.preference_pair(random.Random(7)), world.preference_pair(random.Random(7), style="short")
    assert (a["prompt"], a["reason"]) == (b["prompt"], b["reason"])
    some = set(list(world.people)[:3]) | set(list(world.countries)[:1])
    prompts = [world.preference_pair(rng, subjects=some)["prompt"] for _ in range(50)]
    assert all(any(s in prompt for s in some) for prompt in prompts)
    assert {q for q, _ in world.questions(some)} < set(truth) and len(world.questions(some)) == 3 * 3 + 2
    with pytest.raises(ValueError, match="style must be"):
        world.preference_pair(rng, style="long")
    with pytest.raises(ValueError, match="no person among"):  # some of 20 questions are about people
        for i in range(20):
            world.preference_pair(random.Random(i), subjects=set(world.countries))


def test_sample_answers_keeps_order_and_stops_at_the_end_token(tok):
    model = tiny_model(tok)
    eot = tok.special_tokens["<|endoftext|>"]
    questions = ["How old is Vogri?", "What is the capital of Zankolo?", "How old is Zanlo?"]
    samples = sample_answers(model, tok, questions, k=2, greedy=True, max_new_tokens=5)
    assert len(samples) == 6
    for i, (prompt, answer) in enumerate(samples):
        assert tok.decode(prompt).endswith(questions[i // 2] + "\n<|assistant|>")
        assert 1 <= len(answer) <= 5 and (eot not in answer[:-1])
    assert samples[0] == samples[1] and samples[2] == samples[3]  # greedy: both samples agree
    gen = torch.Generator().manual_seed(0)
    sampled = sample_answers(model, tok, questions, k=3, generator=gen, max_new_tokens=4)
    assert len({tuple(a) for _, a in sampled}) > 1
    with pytest.raises(ValueError, match="k must be"):
        sample_answers(model, tok, questions, k=0)
    with pytest.raises(ValueError, match="questions must not be empty"):
        sample_answers(model, tok, [])


def test_score_batch_masks_exactly_the_answers(tok):
    samples = [([1, 2, 3], [7, 8]), ([4, 5], [9, 10, 11])]
    x, y, full, lengths = score_batch(samples, pad_id=0)
    assert x.shape == y.shape == (2, 4) and full.shape == (2, 5)
    assert y.tolist() == [[-100, -100, 7, 8], [-100, 9, 10, 11]]
    assert full.tolist() == [[1, 2, 3, 7, 8], [4, 5, 9, 10, 11]] and lengths.tolist() == [5, 5]


def test_rlhf_runs_logs_and_leaves_the_reference_alone(tok, world):
    policy, rm_body = tiny_model(tok, 0), tiny_model(tok, 1)
    rm, losses = train_reward_model(rm_body, tok, pairs_stream(world), steps=3, lr=1e-3, progress=False)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    before = [p.clone() for p in policy.parameters()]
    trained, log = rlhf(policy, policy, rm, tok, world.questions()[:20],
                        RLHFConfig(beta=0.1, steps=2, prompts_per_step=4, k=2, max_new_tokens=4), progress=False)
    assert len(log.reward) == len(log.kl) == len(log.gold) == len(log.objective) == len(log.entropy) == 2
    assert all(e > 0 for e in log.entropy)  # -log pi of sampled answers: TRL's objective/entropy
    assert log.kl[0] == pytest.approx(0.0, abs=1e-5)  # the first step samples from the reference itself
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))  # a copy was trained
    assert any(not torch.equal(a, b) for a, b in zip(before, trained.parameters()))
    for bad in (dict(beta=-1.0), dict(k=1), dict(lr=0.0), dict(temperature=0.0)):
        with pytest.raises(ValueError):
            RLHFConfig(**bad)


def test_dpo_widens_the_margin_and_checks_its_arguments(tok, world):
    ref = tiny_model(tok)
    stream = pairs_stream(world, seed=1)
    trained, log = dpo(ref, ref, tok, lambda step: stream(0), steps=5, beta=0.5, lr=3e-3, progress=False)
    assert log["margin"][0] == pytest.approx(0.0, abs=1e-5) and log["loss"][0] == pytest.approx(0.6931, abs=1e-4)
    chosen, rejected = preference_batch(tok, stream(0))
    from utils.sft import collate

    block = max(len(i) for i, _ in chosen + rejected) - 1
    (xc, yc), (xr, yr) = collate(chosen, block, 0), collate(rejected, block, 0)
    with torch.no_grad():
        margin = ((sequence_logprob(trained, xc, yc) - sequence_logprob(ref, xc, yc))
                  - (sequence_logprob(trained, xr, yr) - sequence_logprob(ref, xr, yr)))
    assert margin.mean() > 0
    _, with_nll = dpo(ref, ref, tok, lambda step: stream(0), steps=5, beta=0.5, lr=3e-3, nll_weight=1.0,
                      progress=False)
    assert with_nll["chosen_logprob"][-1] > log["chosen_logprob"][-1]
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo(ref, ref, tok, stream, steps=1, beta=0.0)
    with pytest.raises(ValueError, match="nll_weight must be >= 0"):
        dpo(ref, ref, tok, stream, steps=1, nll_weight=-1.0)


def test_measures(tok, world):
    model = tiny_model(tok)
    questions = world.questions()[:6]
    assert answer_kl(model, copy.deepcopy(model), tok, [q for q, _ in questions], k=2) == pytest.approx(0.0, abs=1e-5)
    assert answer_kl(model, tiny_model(tok, 1), tok, [q for q, _ in questions], k=2) > 0
    texts = greedy_answers(model, tok, [q for q, _ in questions], max_new_tokens=3)
    assert len(texts) == 6 and gold_score(model, tok, questions) == 0.0  # a random model is never right
    rm = train_reward_model(model, tok, pairs_stream(world), steps=1, progress=False)[0]
    accuracy = reward_accuracy(rm, tok, pairs_stream(world, seed=5, n=40)(0))
    assert set(accuracy) == {"all", "bare", "false"} and 0 <= accuracy["all"] <= 1
    with pytest.raises(ValueError, match="questions must not be empty"):
        gold_score(model, tok, [])


def test_exact_answer_reward_is_the_gold_checker_and_drives_rlhf(tok, world):
    """The verifiable reward of chapter 10: 1 for the exact true answer, 0 for anything else; rlhf
    calls it on the answer texts instead of a reward model's token ids."""
    questions = world.questions()
    truth = dict(questions)
    reward = ExactAnswerReward(questions)
    q = "How old is Vogri?"
    assert truth[q] == "He is 56."  # a real person of World(0)
    got = reward.score_answers([q, q, q], ["He is 56.", "She is 56.", "He is 57."])
    assert got.tolist() == [1.0, 0.0, 0.0] and got.dtype == torch.float32
    assert ExactAnswerReward(questions, correct=2.0, wrong=-1.0).score_answers([q, q], ["He is 56.", "x"]).tolist() == [
        2.0, -1.0]
    assert reward.eval() is reward
    with pytest.raises(ValueError, match="questions must be among"):
        reward.score_answers(["How old is Zorblat?"], ["He is 1."])
    with pytest.raises(ValueError, match="same length"):
        reward.score_answers([q], [])
    with pytest.raises(ValueError, match="questions must not be empty"):
        ExactAnswerReward([])
    with pytest.raises(ValueError, match="correct"):
        ExactAnswerReward(questions, correct=float("nan"))
    # in rlhf: with a random policy no sampled answer is right, so every reward is 0 and the logged score
    # equals the logged gold share (both 0); the objective is then -beta * KL
    policy = tiny_model(tok)
    trained, log = rlhf(policy, policy, reward, tok, questions[:12],
                        RLHFConfig(beta=0.1, steps=2, prompts_per_step=3, k=2, max_new_tokens=4), progress=False)
    assert log.reward == log.gold == [0.0, 0.0]
    assert log.objective == pytest.approx([-0.1 * kl for kl in log.kl], abs=1e-5)
