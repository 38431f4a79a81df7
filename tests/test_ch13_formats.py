"""Chapter 13's three formats of a sum (plain, steps, reversed) and the reversed-answer control."""

import random

import pytest
import torch

from utils.arithmetic import (
    ARITH_CONFIG,
    FORMATS,
    AdditionBatches,
    ArithmeticTokenizer,
    accuracy_by_digits,
    complete,
    completion_token_stats,
    format_completion,
    held_out_sums,
    load_arithmetic_model,
    parse_completion,
    sample_answers,
    self_consistency,
)
from utils.model import GPT
from utils.tiny_world import addition_completion


def test_the_three_formats_of_one_sum():
    assert FORMATS == ("plain", "steps", "reversed")
    assert format_completion(47, 85, "plain") == "132"
    assert format_completion(47, 85, "steps") == "7+5+0=12;4+8+1=13;so 132"
    assert format_completion(47, 85, "reversed") == "231"
    assert format_completion(50, 50, "reversed") == "001"  # zeros kept: the lowest digit comes first
    assert parse_completion("001", "reversed") == 100 and parse_completion("001", "plain") == 1
    assert parse_completion("7+5+0=12;4+8+1=13;so 132", "steps") == 132
    assert parse_completion("so", "reversed") is None and parse_completion("", "plain") is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_parses_back_to_the_sum(fmt):
    rng = random.Random(0)
    for _ in range(300):
        d = rng.randint(1, 5)
        low = 10 ** (d - 1) if d > 1 else 0
        a, b = rng.randint(low, 10**d - 1), rng.randint(low, 10**d - 1)
        assert parse_completion(format_completion(a, b, fmt), fmt) == a + b
        assert format_completion(a, b, fmt) == (addition_completion(a, b, fmt == "steps") if fmt != "reversed"
                                                else str(a + b)[::-1])


def test_reversed_rows_hold_the_plain_rows_sums_with_the_answers_reversed():
    tok = ArithmeticTokenizer()
    x_plain, y_plain = AdditionBatches(fmt="plain", batch_size=4).get_batch("train", 5)
    x_rev, y_rev = AdditionBatches(fmt="reversed", batch_size=4).get_batch("train", 5)
    assert torch.equal(y_plain != -100, y_rev != -100)  # the same positions carry loss
    for row_p, row_r in zip(x_plain.tolist(), x_rev.tolist()):
        lines_p, lines_r = tok.decode(row_p).split("\n"), tok.decode(row_r).split("\n")
        for lp, lr in zip(lines_p[1:-1], lines_r[1:-1]):  # whole examples (the last one is cut)
            question, answer = lp.split("=")
            assert lr == f"{question}={answer[::-1]}"
    # the old spelling still works and means the same rows
    assert torch.equal(AdditionBatches(False, batch_size=4).get_batch("train", 5)[0], x_plain)
    assert torch.equal(AdditionBatches(steps=True, batch_size=2).get_batch("val", 1)[0],
                       AdditionBatches(fmt="steps", batch_size=2).get_batch("val", 1)[0])


def test_format_arguments_are_checked():
    with pytest.raises(ValueError, match="fmt must be one of 'plain', 'steps', 'reversed', got 'reverse'"):
        AdditionBatches(fmt="reverse")
    with pytest.raises(ValueError, match="contradicts"):
        AdditionBatches(steps=True, fmt="reversed")
    with pytest.raises(ValueError, match="pass steps=True/False or fmt="):
        AdditionBatches()
    with pytest.raises(ValueError, match="steps must be True or False, got 'yes'"):
        AdditionBatches(steps="yes")
    with pytest.raises(ValueError, match="early checkpoint"):
        load_arithmetic_model(fmt="reversed", early=True)
    assert AdditionBatches(steps=False, fmt="plain").fmt == "plain"  # agreeing is allowed


def test_scoring_functions_take_the_format():
    torch.manual_seed(0)
    model = GPT(ARITH_CONFIG).eval()
    pairs = held_out_sums(3, 4)
    out = complete(model, pairs, fmt="reversed")
    assert len(out) == 4 and all(len(o) == 1 and len(o[0]) <= 5 for o in out)  # n + 1 digits at most
    assert complete(model, pairs, False) == out  # plain and reversed generate the same length
    assert accuracy_by_digits(model, fmt="reversed", digits=[3], n=4)[3] <= 0.25
    stats = completion_token_stats(model, pairs, fmt="reversed")
    assert stats["tokens"] == sum(len(str(a + b)) + 1 for a, b in pairs) / 4
    answers = sample_answers(model, pairs, k=2, temperature=1.0, seed=0, fmt="reversed")
    assert len(answers) == 4 and all(len(r) == 2 for r in answers)
    assert self_consistency(model, pairs, ks=(1, 2), temperature=1.0, seed=0, fmt="reversed").keys() == {1, 2}


def test_the_stored_reversed_model_is_the_control():
    """Same architecture, steps and FLOPs as the other two; it was trained on the plain model's sums."""
    rev, info = load_arithmetic_model(fmt="reversed")
    _, plain_info = load_arithmetic_model(steps=False)
    _, steps_info = load_arithmetic_model(steps=True)
    assert info["format"] == "reversed" and not info["steps"]
    for other in (plain_info, steps_info):
        assert info["model_config"] == other["model_config"] and info["flops_per_step"] == other["flops_per_step"]
        assert info["trained_steps"] == other["trained_steps"] and info["train_config"] == other["train_config"]
    now = accuracy_by_digits(rev, fmt="reversed", digits=[1, 2, 4], n=100)
    assert all(abs(now[d] - info["accuracy"][d]) <= 0.05 for d in now)  # the stored record is this model's
    # chapter 13's finding: on long sums the order of the digits alone does not help at this budget
    steps_model, _ = load_arithmetic_model(steps=True)
    assert now[4] < 0.1 and accuracy_by_digits(steps_model, fmt="steps", digits=[4], n=50)[4] > 0.9
