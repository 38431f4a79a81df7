"""SFT's template and loss mask, and the preference losses (Bradley-Terry, DPO) by hand."""

import math
import random

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.preference import RewardModel, bradley_terry_loss, dpo_loss, encode_pair, sequence_logprob
from utils.pretraining import world_tokenizer
from utils.sft import SFT_TRAIN, SFTBatches, chat_prompt, collate, encode_chat, split_subjects
from utils.tiny_world import World


@pytest.fixture(scope="module")
def tok():
    return world_tokenizer()


def test_chat_template_and_which_positions_carry_loss(tok):
    q, a = "How old is Vogri?", "Ask Vogri and you learn that he is 56."
    ids, mask = encode_chat(tok, q, a)
    assert tok.decode(ids) == chat_prompt(q) + a + "\n<|endoftext|>"
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == a + "\n<|endoftext|>"
    assert tok.decode([i for i, m in zip(ids, mask) if not m]) == chat_prompt(q)
    x, y = collate([(ids, mask)], block_size=40, pad_id=0)
    targets = y[0][y[0] != -100].tolist()
    assert tok.decode(targets) == a + "\n<|endoftext|>"
    first = mask.index(True)
    # the first answer token is predicted at the position of <|assistant|>, the last prompt token
    assert (y[0] != -100).nonzero()[0].item() == first - 1 and x[0, first - 1].item() == tok.special_tokens[
        "<|assistant|>"]
    assert torch.equal(x[0, 1: len(ids) - 1], torch.tensor(ids[1:-1]))


def test_collate_by_hand_and_errors():
    x, y = collate([([7, 8, 9, 10], [False, False, True, True]), ([5, 6], [False, True])], block_size=4, pad_id=0)
    assert x.tolist() == [[7, 8, 9, 0], [5, 0, 0, 0]]
    assert y.tolist() == [[-100, 9, 10, -100], [6, -100, -100, -100]]
    with pytest.raises(ValueError, match="no response tokens"):
        collate([([7, 8, 9], [False, False, False])], block_size=4, pad_id=0)
    with pytest.raises(ValueError, match="more than block_size"):
        collate([([1] * 9, [True] * 9)], block_size=4, pad_id=0)
    with pytest.raises(ValueError, match="must not be empty"):
        collate([], block_size=4, pad_id=0)


def test_sft_data(tok):
    world = World(0)
    train, held = split_subjects(world)
    assert not train & held and train | held == set(world.countries) | set(world.people)
    data = SFTBatches(world, tok, train, block_size=48, batch_size=8)
    x, y = data.get_batch("train", 3)
    assert torch.equal(x, data.get_batch("train", 3)[0])
    for row in x.tolist():
        question = tok.decode(row).split("<|user|>")[1].split("\n")[0]
        words = set(question.rstrip("?").split())
        assert words & train and not words & held  # questions ask only about fine-tuning subjects


def test_bradley_terry_and_dpo_by_hand():
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log(1 + math.exp(-1)))
    # beta 0.5, policy gained 0.5 on the chosen and lost 0.5 on the rejected: margin 0.5
    pc, pr, rc, rr = (torch.tensor([v], requires_grad=i < 2) for i, v in enumerate([-1.0, -2.0, -1.5, -1.5]))
    loss, chosen_reward, rejected_reward = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)), abs=1e-7)  # 0.474077
    assert chosen_reward.item() == pytest.approx(0.25) and rejected_reward.item() == pytest.approx(-0.25)
    margin = 0.5 * ((pc - rc) - (pr - rr))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-margin.item()))))  # the sigmoid form
    loss.backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises the chosen and lowers the rejected
    assert pc.grad.item() == pytest.approx(-0.5 * (1 - 1 / (1 + math.exp(-0.5))))
    for beta in (0.0, -1.0):
        with pytest.raises(ValueError, match="beta must be > 0"):
            dpo_loss(pc, pr, rc, rr, beta=beta)


def test_sequence_logprob_and_reward_model(tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32)).eval()
    x = torch.randint(0, tok.vocab_size, (2, 8))
    y = torch.full((2, 8), -100)
    y[0, 3:6] = x[0, 4:7]
    y[1, 0] = 5
    with torch.no_grad():
        got = sequence_logprob(model, x, y)
        logp = torch.log_softmax(model(x)[0], -1)
    assert got[0].item() == pytest.approx(sum(logp[0, t, x[0, t + 1]].item() for t in range(3, 6)), rel=1e-5)
    assert got[1].item() == pytest.approx(logp[1, 0, 5].item(), rel=1e-5)
    y[1, 0] = -100
    with pytest.raises(ValueError, match=r"rows \[1\] have no response tokens"):
        sequence_logprob(model, x, y)
    rm = RewardModel(model)
    lengths = torch.tensor([5, 8])
    r = rm(x, lengths)
    padded = x.clone()
    padded[0, 5:] = 0  # tokens after the length do not change the reward
    assert r.shape == (2,) and torch.allclose(rm(padded, lengths), r)
    with pytest.raises(ValueError, match="lengths must be"):
        rm(x, torch.tensor([0, 8]))


def test_identical_preference_pair_is_an_error(tok):
    world = World(0)
    pair = world.preference_pair(random.Random(0))
    chosen, rejected = encode_pair(tok, pair["prompt"], pair["chosen"], pair["rejected"])
    assert chosen[0] != rejected[0]
    with pytest.raises(ValueError, match="identical"):
        encode_pair(tok, pair["prompt"], pair["chosen"], pair["chosen"])


def test_answer_accuracy_exact_and_fact(tok, monkeypatch):
    import utils.sft as sft

    reply = tok.encode_ordinary("She is 44.") + [tok.special_tokens["<|endoftext|>"]]
    monkeypatch.setattr(sft, "generate_replies", lambda model, tokenizer, qs: [([], reply)] * len(qs))  # a stand-in
    assert sft.answer_accuracy(None, tok, [("How old is Venka?", "She is 44.")]) == 1.0
    assert sft.answer_accuracy(None, tok, [("How old is Venka?", "He is 44.")]) == 0.0
    assert sft.answer_accuracy(None, tok, [("How old is Venka?", "He is 44.")], match="fact") == 1.0
    assert sft.answer_accuracy(None, tok, [("How old is Venka?", "He is 45.")], match="fact") == 0.0
    with pytest.raises(ValueError, match="match must be"):
        sft.answer_accuracy(None, tok, [("q", "a")], match="fuzzy")
    with pytest.raises(ValueError, match="must not be empty"):
        sft.answer_accuracy(None, tok, [])


def test_relative_change():
    import copy

    from utils.sft import relative_change

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, n_embd=8))
    moved = copy.deepcopy(model)
    assert relative_change(model, moved) == 0.0
    with torch.no_grad():
        for p in moved.parameters():
            p.mul_(1.1)  # every weight 10% larger: the change is exactly 10% of the size
    assert relative_change(model, moved) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="different sizes"):
        relative_change(model, GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=2, n_head=1, n_embd=8)))


def test_answer_text_cuts_at_the_end_token_then_the_newline(tok):
    from utils.sft import answer_text

    eot = tok.special_tokens["<|endoftext|>"]
    ids = tok.encode_ordinary("He is 44.\nmore") + [eot] + tok.encode_ordinary("after")
    assert answer_text(tok, ids) == "He is 44."
    assert answer_text(tok, tok.encode_ordinary("It exports wool.") + [eot]) == "It exports wool."
    assert answer_text(tok, [eot]) == ""


def test_batched_replies_are_the_replies_one_question_at_a_time(tok):
    """generate_replies batches prompts of equal length and stops at <|endoftext|>: the same greedy text
    as ``answer`` (one question, no early stop), for a model that ends its replies and one that does not,
    over questions of several prompt lengths."""
    from utils.pretraining import load_reference
    from utils.sft import answer, answer_text, generate_replies, load_sft_model

    questions = [q for q, _ in World(0).questions()][::9]
    assert len({len(tok.encode(chat_prompt(q), allowed_special="all")) for q in questions}) > 2
    model = load_sft_model()[0]  # chapter 9's model, which ends its replies
    replies = generate_replies(model, tok, questions)
    eot = tok.special_tokens["<|endoftext|>"]
    assert sum(ids[-1:] == [eot] for _, ids in replies) > len(questions) / 2
    assert [answer_text(tok, ids) for _, ids in replies] == [answer(model, tok, q) for q in questions]
    base = load_reference()[0]  # a model that rarely ends them: the batch runs to max_new_tokens
    assert [answer_text(tok, ids) for _, ids in generate_replies(base, tok, questions[:6])] == [
        answer(base, tok, q) for q in questions[:6]]


def test_the_stored_sft_model_is_chapter_9s_run(tok):
    """utils/data/sft_model.pt records today's settings of finetune_reference(seed=0) and answers like
    chapter 9's SFT model (regenerate with ``python -m utils.sft`` if a setting changes)."""
    from dataclasses import asdict

    from utils.sft import SFT_BATCH_SIZE, SFT_BLOCK_SIZE, answer_accuracy, load_sft_model

    model, info = load_sft_model()
    assert info["seed"] == 0 and info["train_config"] == asdict(SFT_TRAIN)
    assert (info["block_size"], info["batch_size"]) == (SFT_BLOCK_SIZE, SFT_BATCH_SIZE)
    assert info["eval_loss"][-1] < 0.05 < info["eval_loss"][0]
    world = World(0)
    tuned_on, _ = split_subjects(world, held_out_fraction=0.5, seed=0)
    assert answer_accuracy(model, tok, world.questions(tuned_on)[::4]) >= 0.95
