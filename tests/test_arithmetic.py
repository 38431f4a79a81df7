"""Chapter 13's arithmetic data, scoring and self-consistency (and chapter 11's emergence curve)."""

import pytest
import torch

from utils.arithmetic import (
    ARITH_CONFIG,
    AdditionBatches,
    ArithmeticTokenizer,
    accuracy_by_digits,
    complete,
    completion_token_stats,
    held_out_sums,
    load_arithmetic_model,
    majority_vote,
    self_consistency,
)
from utils.model import GPT
from utils.tiny_world import addition_completion


def test_tokenizer_round_trip_and_errors():
    tok = ArithmeticTokenizer()
    text = "\n47+85=7+5+0=12;4+8+1=13;so 132\n"
    assert tok.decode(tok.encode(text)) == text and tok.vocab_size == ARITH_CONFIG.vocab_size
    with pytest.raises(ValueError, match="outside"):
        tok.encode("4*5")
    with pytest.raises(ValueError, match="token ids"):
        tok.decode([99])


@pytest.mark.parametrize("steps", [True, False])
def test_rows_carry_loss_only_on_completions(steps):
    data = AdditionBatches(steps, batch_size=4)
    tok = ArithmeticTokenizer()
    x, y = data.get_batch("train", 3)
    assert x.shape == y.shape == (4, ARITH_CONFIG.block_size)
    assert torch.equal(x, data.get_batch("train", 3)[0]) and not torch.equal(x, data.get_batch("val", 3)[0])
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        text = tok.decode(row_x)
        assert text[0] == "\n"
        for i in range(len(row_x) - 1):  # target i predicts character i + 1
            in_completion = "=" in text[: i + 1].rsplit("\n", 1)[-1]  # its line's question is already over
            assert (row_y[i] != -100) == in_completion, (i, text)
            assert row_y[i] in (-100, row_x[i + 1])
    assert (y != -100).any()
    with pytest.raises(ValueError, match="split"):
        data.get_batch("test", 0)


def test_held_out_sums():
    pairs = held_out_sums(3, 50)
    assert len(pairs) == 50 and all(100 <= a <= 999 and 100 <= b <= 999 for a, b in pairs)
    assert held_out_sums(3, 50) == pairs and held_out_sums(3, 50, seed=1) != pairs
    with pytest.raises(ValueError, match="n_digits"):
        held_out_sums(0)


def test_majority_vote():
    assert majority_vote([3, 3, 5]) == 3 and majority_vote([5, 3, 3, 5]) == 5
    assert majority_vote([None, None, 7]) == 7 and majority_vote([None]) is None and majority_vote([]) is None


def test_scoring_on_a_random_model_and_errors():
    torch.manual_seed(0)
    model = GPT(ARITH_CONFIG).eval()
    pairs = held_out_sums(2, 4)
    out = complete(model, pairs, steps=False)
    assert len(out) == 4 and all(len(o) == 1 and "\n" not in o[0] for o in out)
    assert accuracy_by_digits(model, False, digits=[2], n=4)[2] <= 0.25
    full = completion_token_stats(model, pairs, steps=True)
    assert full["tokens"] == sum(len(addition_completion(a, b, True)) + 1 for a, b in pairs) / 4
    assert full["loss"] > 1.0 and full["teacher_forced_exact"] == 0 and full["greedy_exact"] <= 0.25
    with pytest.raises(ValueError, match="same number of digits"):
        complete(model, [(1, 2), (10, 20)], steps=False)
    with pytest.raises(ValueError, match="temperature"):
        self_consistency(model, pairs, steps=True, temperature=0)


def test_stored_models_with_steps_beat_without():
    with_steps, info = load_arithmetic_model(steps=True)
    plain, plain_info = load_arithmetic_model(steps=False)
    assert info["model_config"] == plain_info["model_config"] and info["flops_per_step"] == plain_info["flops_per_step"]
    assert info["trained_steps"] == plain_info["trained_steps"]  # the same training compute
    acc_steps = accuracy_by_digits(with_steps, True, digits=[4], n=50)[4]
    acc_plain = accuracy_by_digits(plain, False, digits=[4], n=50)[4]
    assert acc_steps > acc_plain + 0.3, (acc_steps, acc_plain)
    # the stored record of the steps model's training is chapter 11's emergence curve
    curve = info["curve"]
    assert len(curve) >= 20 and curve[-1]["loss"] < curve[0]["loss"] / 10
    assert curve[0]["greedy_exact"] == 0 and curve[-1]["greedy_exact"] == 1.0
    assert curve[0]["token_accuracy"] > 0.3  # many characters are easy from the start
    # teacher forcing on the steps model reproduces its stored accuracy on the right answers
    stats = completion_token_stats(with_steps, held_out_sums(5, 30, seed=1), steps=True)
    assert stats["teacher_forced_exact"] >= 0.9 and stats["greedy_exact"] >= 0.9


def test_self_consistency_is_reproducible():
    model, _ = load_arithmetic_model(steps=True, early=True)
    pairs = held_out_sums(5, 20, seed=2)
    a = self_consistency(model, pairs, steps=True, ks=(1, 5), temperature=0.8, seed=0)
    assert a == self_consistency(model, pairs, steps=True, ks=(1, 5), temperature=0.8, seed=0)
    assert set(a) == {1, 5} and all(0 <= v <= 1 for v in a.values())
    with pytest.raises(ValueError, match="early"):
        load_arithmetic_model(steps=False, early=True)
