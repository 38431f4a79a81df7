"""Checks for the chapter 9 exercises: supervised fine-tuning.

Usage in the notebook::

    from utils.checks import ch09 as check
    check.sft_example(sft_example)
"""

from __future__ import annotations

import math

import torch

from ..pretraining import world_tokenizer
from ..sft import collate, encode_chat
from . import Fail, as_number, question

QUESTIONS: dict = {}
EXAMPLE = ("How old is Vogri?", "He is 56.")


def _reference(prompt, reply, eot):
    ids = prompt + reply + [eot]
    mask = [False] * len(prompt) + [True] * (len(reply) + 1)
    x, y = collate([(ids, mask)], block_size=len(ids) - 1, pad_id=eot)
    return x[0].tolist(), y[0].tolist()


@question(QUESTIONS, "q1", "a training example with its loss mask", points=3)
def sft_example(fn):
    # the last case repeats prompt tokens in the answer and as eot: masking by value, not position, fails it
    cases = [([1, 2, 3], [7, 8], 0), ([5], [6], 9), ([4, 4, 4, 4], [2, 3, 2, 3, 1], 0), ([0, 5, 6], [6, 7], 0)]
    for prompt, reply, eot in cases:
        x, y = _reference(prompt, reply, eot)
        got = fn(list(prompt), list(reply), eot)
        if got is None:
            raise Fail("returned None: return the pair (x, y)")
        try:
            gx, gy = (list(map(int, torch.as_tensor(v).flatten().tolist())) for v in got)
        except (TypeError, ValueError):
            raise Fail(f"return a pair (x, y) of lists (or 1-D tensors) of token ids, got {type(got).__name__}") from None
        if gx != x:
            raise Fail(f"prompt {prompt}, answer {reply}, eot {eot}: x should be {x} (every token but the last of "
                       f"prompt + answer + [eot]), got {gx}")
        if len(gy) == len(y) and any(g == -100 and t != -100 and t in prompt for g, t in zip(gy, y)):
            raise Fail(f"prompt {prompt}, answer {reply}, eot {eot}: an answer token that also occurs in the prompt "
                       "lost its loss; decide by POSITION (is the target after the prompt?), not by token value")
        if gy[: len(prompt) - 1] == y[: len(prompt) - 1] and len(gy) == len(y) and gy[len(prompt) - 1] == -100:
            raise Fail("the first answer token is predicted at the LAST prompt position (<|assistant|>); "
                       "that target must carry loss")
        if len(gy) == len(y) and gy[-1] == -100:
            raise Fail("the final <|endoftext|> must carry loss: it teaches the model to stop")
        if gy != y:
            raise Fail(f"prompt {prompt}, answer {reply}, eot {eot}: expected y = {y}, got {gy}; y is x shifted left "
                       "by one, with -100 where the target is a prompt token")
    return "loss on the answer and the end token, predicted from the last prompt token on"


@question(QUESTIONS, "q2", "how far the weights moved", points=2)
def relative_change(fn):
    g = torch.Generator().manual_seed(0)
    before = [torch.randn(4, 3, generator=g), torch.randn(5, generator=g)]
    after = [before[0] + 0.1 * torch.randn(4, 3, generator=g), before[1] * 0.9]
    delta = torch.cat([(a - b).flatten() for a, b in zip(after, before)])
    expected = (delta.norm() / torch.cat([b.flatten() for b in before]).norm()).item()
    got = fn([b.clone() for b in before], [a.clone() for a in after])
    if got is None:
        raise Fail("returned None: did you forget `return`?")
    got = as_number(got, "relative_change(before, after)")
    per_tensor = sum(((a - b).norm() / b.norm()).item() for a, b in zip(after, before)) / 2
    if math.isclose(got, per_tensor, rel_tol=1e-4):
        raise Fail("that averages the tensors' ratios; flatten all parameters into one vector first")
    if not math.isclose(got, expected, rel_tol=1e-4):
        raise Fail(f"got {got:.4f}, expected {expected:.4f}: the norm of all changes together divided by the "
                   "norm of all the weights before")
    return f"{expected:.4f}"


@question(QUESTIONS, "q3", "the share of positions with loss", points=1)
def share_with_loss(value):
    ids, mask = encode_chat(world_tokenizer(), *EXAMPLE)
    expected = sum(mask[1:]) / (len(ids) - 1)
    value = as_number(value, "your answer")
    if math.isclose(value, sum(mask) / len(ids), rel_tol=1e-6) and not math.isclose(
            sum(mask) / len(ids), expected):
        raise Fail("count over the targets (len(ids) - 1 positions), not over the ids")
    if not math.isclose(value, expected, rel_tol=1e-6):
        raise Fail(f"got {value:.3f}; use encode_chat's mask: targets are ids[1:], with loss where mask[1:] is True")
    return f"{expected:.3f}: most of this example's positions are prompt"
