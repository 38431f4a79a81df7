"""Checks for the chapter 8 exercises: pretraining.

Usage in the notebook::

    from utils.checks import ch08 as check
    check.make_row(make_row)
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F

from ..model import GPT, GPTConfig
from ..pretraining import pack_row, world_tokenizer
from ..tiny_world import World
from ..train import TrainConfig, lr_at
from . import Fail, as_number, call, question

QUESTIONS: dict = {}


@question(QUESTIONS, "q1", "pack sentences into a training row", points=2)
def make_row(fn):
    cases = [([[5, 6, 1], [7, 1], [8, 8, 1]], 0, 6), ([[5, 6, 1], [7, 1]], 0, 5), ([[3, 1]], 9, 8),
             ([[4, 4, 4, 1], [2, 1], [3, 3, 1], [6, 1]], 0, 10),
             ([[4, 4, 1], [5, 5, 5, 5, 1], [2, 1]], 0, 6)]  # stop at the first sentence that does not fit
    for sentences, bos, block_size in cases:
        x, y, _ = pack_row(sentences, bos, block_size)
        got = fn([list(s) for s in sentences], bos, block_size)
        if got is None:
            raise Fail("returned None: return the pair (x, y)")
        gx, gy = (list(map(int, v)) for v in got)
        if len(gx) != block_size or len(gy) != block_size:
            raise Fail(f"x and y must both have length block_size={block_size}, got {len(gx)} and {len(gy)}")
        if gx[0] != bos:
            raise Fail("x must start with the bos token: the first sentence is predicted from it")
        if gx == x and gy != y and -100 in y and -100 not in gy:
            raise Fail("pad y with -100 (no loss), not with a token id")
        if gx != x or gy != y:
            raise Fail(f"for sentences {sentences}, bos={bos}, block_size={block_size}: expected x={x}, y={y}, got "
                       f"x={gx}, y={gy}; take whole sentences while [bos] + sentences has at most block_size + 1 "
                       "tokens, then shift by one")
    return "x = [bos] + sentences, y = x shifted left"


@contextlib.contextmanager
def _watch_cross_entropy():
    """Count calls of PyTorch's cross-entropy kernel while the learner's code runs.

    ``F.cross_entropy``, ``nn.CrossEntropyLoss`` and ``from torch.nn.functional import cross_entropy``
    all end in ``torch._C._nn.cross_entropy_loss``, looked up at call time, so wrapping it sees
    every spelling. The wrapper still computes the loss, so the answer's value can be checked too.
    """
    kernel = torch._C._nn.cross_entropy_loss
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    torch._C._nn.cross_entropy_loss = counting
    try:
        yield calls
    finally:
        torch._C._nn.cross_entropy_loss = kernel


@question(QUESTIONS, "q2", "the next-token loss", points=2)
def next_token_loss(fn):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g) * 2
    targets = torch.randint(0, 11, (3, 7), generator=g)
    targets[0, 5:] = -100
    targets[2, 2:] = -100
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=-100)
    with _watch_cross_entropy() as calls:
        got = call(fn, logits, targets)
    if got is None:
        raise Fail("returned None: did you forget `return`?")
    if calls:
        raise Fail("you called F.cross_entropy (or nn.CrossEntropyLoss), which this question asks you to write "
                   "yourself: take torch.log_softmax of the logits, gather the target's log-probability, and average "
                   "it over the positions whose target is not -100")
    got = as_number(got, "next_token_loss(logits, targets)")
    keep = targets != -100
    nll = -torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    if math.isclose(got, (nll * keep).sum().item(), rel_tol=1e-4):
        raise Fail("that is the sum; the loss is the mean over the positions that have a target")
    if math.isclose(got, (nll * keep).sum().item() / keep.numel(), rel_tol=1e-4):
        raise Fail("you divided by all positions; divide by the number of positions whose target is not -100")
    if not math.isclose(got, expected.item(), rel_tol=1e-4):
        raise Fail(f"got {got:.4f}, expected {expected.item():.4f}: the mean of -log softmax(logits)[target] over "
                   "the positions whose target is not -100")
    return f"{got:.4f}, as F.cross_entropy gives"


@question(QUESTIONS, "q3", "warmup and cosine decay", points=2)
def learning_rate(fn):
    for lr, min_lr, warmup, max_steps in [(1.0, 0.1, 10, 110), (3e-3, 3e-4, 30, 300), (0.5, 0.5, 0, 20)]:
        config = TrainConfig(max_steps=max_steps, lr=lr, min_lr=min_lr, warmup_steps=warmup)
        for step in range(max_steps):
            expected = lr_at(step, config)
            got = fn(step, lr, min_lr, warmup, max_steps)
            if got is None:
                raise Fail("returned None: did you forget `return`?")
            got = as_number(got, f"learning_rate({step}, ...)")
            if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
                phase = "warmup" if step < warmup else "cosine"
                raise Fail(f"lr={lr}, min_lr={min_lr}, warmup={warmup}, max_steps={max_steps}: at step {step} "
                           f"({phase}) expected {expected:.6g}, got {got:.6g}; warmup gives lr*(step+1)/warmup, "
                           "the cosine runs from lr at the first step after warmup to min_lr at the last step")
    return "the same schedule as utils.train.lr_at"


@question(QUESTIONS, "q4", "the entropy of a sentence", points=2)
def sentence_entropy(fn):
    cases = [([0.30, 0.20, 0.20, 0.15, 0.15], [12, 12, 40, 40, 40]), ([0.5, 0.5], [1, 1]), ([1.0], [7]),
             ([0.25, 0.75], [3, 100])]
    for probs, counts in cases:
        expected = -sum(p * math.log(p) for p in probs) + sum(p * math.log(n) for p, n in zip(probs, counts))
        got = fn(list(probs), list(counts))
        if got is None:
            raise Fail("returned None: did you forget `return`?")
        got = as_number(got, "sentence_entropy(...)")
        if math.isclose(got, expected / math.log(2), rel_tol=1e-6) and expected > 0:
            raise Fail("that is in bits; use the natural log (nats), as the loss does")
        if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            raise Fail(f"for probabilities {probs} and subject counts {counts}: expected {expected:.4f} nats, got "
                       f"{got:.4f}; add the template's entropy and the expected log of the number of subjects")
    return "H(template) + sum p(t) log n_t"


@question(QUESTIONS, "q5", "one training step", points=2)
def train_step(fn):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    ref = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    clip = 0.05  # small, so that clipping changes the step
    for step in range(3):
        _, ref_loss = ref(x, y)
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        ref_opt.step()
        got = call(fn, model, opt, x, y, clip)  # model and optimiser as they are, x and y as copies
        if got is None:
            raise Fail("returned None: return (loss, grad_norm) as floats")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Fail(f"return the pair (loss, grad_norm), got {type(got).__name__}")
        loss, norm = (as_number(v, "train_step(...)") for v in got)
        if not math.isclose(loss, ref_loss.item(), rel_tol=1e-4):
            raise Fail(f"step {step + 1}: loss {loss:.4f}, expected {ref_loss.item():.4f}: compute the loss with "
                       "model(x, y) before changing the weights")
        if not math.isclose(norm, float(ref_norm), rel_tol=1e-3):
            if step > 0:
                raise Fail(f"step {step + 1}: gradient norm {norm:.4f}, expected {float(ref_norm):.4f}; the first step "
                           "was right, so did you zero the gradients before backward? Otherwise they add up across steps")
            raise Fail(f"gradient norm {norm:.4f}, expected {float(ref_norm):.4f}: return the norm that "
                       "clip_grad_norm_ returns (the norm before clipping)")
        same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), ref.parameters()))
        if not same:
            raise Fail(f"step {step + 1}: the weights differ from the reference; order: forward, zero_grad, backward, "
                       "clip_grad_norm_, optimizer.step()")
    return "zero_grad, forward, backward, clip, step"


@question(QUESTIONS, "q6", "the floor as a perplexity", points=1)
def floor_perplexity(value):
    floor = World(0).entropy_per_token(world_tokenizer().encode_ordinary)
    expected = math.exp(floor)
    value = as_number(value, "your answer")
    if math.isclose(value, 2**floor, rel_tol=1e-3):
        raise Fail("perplexity is e to the loss in nats, not 2 to it")
    if not math.isclose(value, expected, rel_tol=1e-3):
        raise Fail(f"got {value:.3f}; the floor is {floor:.4f} nats/token; perplexity = exp(loss)")
    return f"{expected:.3f}: as unsure as among {expected:.2f} tokens"
