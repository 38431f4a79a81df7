"""Checks for the chapter 7 exercises: the GPT model.

Usage in the notebook::

    from utils.checks import ch07 as check
    check.count_params(count_params)
"""

from __future__ import annotations

import torch

from ..model import GPT, GPTConfig
from . import Fail, as_number, call, question

QUESTIONS: dict = {}
CONFIGS = [GPTConfig(), GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=100),
           GPTConfig(n_layer=24, n_head=16, n_embd=1024)]  # GPT-2 small, a toy, GPT-2 medium


@question(QUESTIONS, "q1", "count the parameters", points=2)
def count_params(fn):
    for config in CONFIGS:
        with torch.device("meta"):  # shapes only, no memory: GPT-2 medium would need 1.4 GB
            expected = GPT(config).num_params(non_embedding=False)
        got = call(fn, config)  # a copy: CONFIGS must survive a learner who edits it
        if got is None:
            raise Fail("returned None: did you forget `return`?")
        untied = expected + config.vocab_size * config.n_embd
        if got == untied:
            raise Fail("you counted the output head separately; it is tied to the token embedding (the same matrix)")
        if got == expected - 2 * config.n_embd:
            raise Fail("the final LayerNorm (scale and shift, 2 x n_embd) is missing")
        if got != expected:
            raise Fail(f"for n_layer={config.n_layer}, n_embd={config.n_embd}: got {got:,}, expected {expected:,}; "
                       "per block: attention (C*3C + 3C) + (C*C + C), MLP (C*4C + 4C) + (4C*C + C), 2 LayerNorms")
    return "GPT-2 small has 124,439,808"


@question(QUESTIONS, "q2", "the MLP's share of a block", points=1)
def mlp_share(share):
    C = 768
    mlp = 8 * C * C + 5 * C
    block = mlp + 4 * C * C + 4 * C + 4 * C
    share = as_number(share, "share")
    if abs(share - mlp / block) > 0.002:
        if abs(share - mlp / block * 100) < 0.2:
            raise Fail("give a fraction between 0 and 1, not a percentage")
        raise Fail(f"got {share:.3f}; divide the MLP's parameters by the whole block's (attention, MLP, LayerNorms)")
    return f"{mlp / block:.3f}: two thirds, per block"


def _modules(seed=0):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20)).eval()
    return m.transformer.h[0]


@question(QUESTIONS, "q3", "a pre-LayerNorm block", points=2)
def block_forward(fn):
    b = _modules()
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    attn = lambda h: b.attn(h, torch.arange(5))  # noqa: E731
    with torch.no_grad():
        got = fn(x.clone(), attn, b.mlp, b.ln_1, b.ln_2)
        expected = b(x, torch.arange(5))
        y = x + attn(b.ln_1(x))
        misplaced = b.ln_2(y) + b.mlp(b.ln_2(y))
        post_ln = b.ln_2(y + b.mlp(y))
    if got is None:
        raise Fail("returned None: did you forget `return`?")
    if torch.allclose(got, misplaced, atol=1e-5):
        raise Fail("the MLP's residual starts from the normalised stream; add the MLP output to x, not to ln_2(x)")
    if torch.allclose(got, post_ln, atol=1e-5):
        raise Fail("that is post-LayerNorm; GPT-2 normalises the *input* of each branch: x + mlp(ln_2(x))")
    if not torch.allclose(got, expected, atol=1e-5):
        raise Fail("x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)), and return x")
    return "x + attn(ln_1(x)), then + mlp(ln_2(x))"


@question(QUESTIONS, "q4", "greedy generation without a cache", points=2)
def generate_greedy(fn):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=50)).eval()
    with torch.no_grad():  # larger weights than at initialisation, so that greedy output depends on context
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(p.numel()))
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = fn(model, prompt.clone(), 12)
        expected = model.generate(prompt, 12, greedy=True)
    if got is None:
        raise Fail("returned None: return the prompt followed by the generated ids")
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        raise Fail(f"expected shape {tuple(expected.shape)} (prompt + 12 tokens), got {tuple(got.shape)}")
    if not torch.equal(got, expected):
        raise Fail("different tokens: at every step take the logits of the LAST position, logits[:, -1, :], "
                   "pick the argmax and append it")
    return "matches model.generate"
