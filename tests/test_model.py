"""The course GPT: Hugging Face parity, the KV cache, RoPE, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.model import GPT, GPTConfig, KVCache, apply_rope, rope_cos_sin

SMALL = dict(block_size=64, vocab_size=101, n_layer=3, n_head=4, n_embd=48)


@pytest.fixture(scope="module")
def hf_pair():
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=48, n_layer=3, n_head=4, vocab_size=101, bos_token_id=0,
                                    eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    ours = GPT.from_hf_state_dict(hf.state_dict(), GPTConfig(**SMALL)).eval()
    return hf, ours


def test_logits_equal_hugging_face_gpt2(hf_pair):
    hf, ours = hf_pair
    idx = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    assert (got - expected).abs().max().item() < 1e-4


def test_loss_equals_hugging_face_loss(hf_pair):
    hf, ours = hf_pair
    idx = torch.randint(0, 101, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        hf_loss = hf(idx, labels=idx).loss  # HF shifts the labels inside
        _, our_loss = ours(idx[:, :-1], targets=idx[:, 1:])
    assert abs(hf_loss.item() - our_loss.item()) < 1e-5


def test_gpt2_small_parameter_count():
    model = GPT(GPTConfig())
    assert model.num_params(non_embedding=False) == 124_439_808  # "124M", with the head tied to wte
    assert model.num_params() == 85_056_000
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("sampling", [dict(greedy=True), dict(temperature=0.8, top_k=20, top_p=0.9)])
def test_kv_cache_gives_the_same_tokens(position, sampling):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL, position=position)).eval()
    prompt = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(3))
    run = lambda cache: model.generate(prompt, 40, generator=torch.Generator().manual_seed(4), use_cache=cache,
                                       **sampling)
    assert torch.equal(run(True), run(False))


def test_cached_logits_equal_full_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL)).eval()
    idx = torch.randint(0, 101, (1, 20))
    with torch.no_grad():
        full, _ = model(idx)
        cache = KVCache(model.config.n_layer)
        first, _ = model(idx[:, :12], cache=cache)  # a prefix of several tokens
        rest, _ = model(idx[:, 12:], cache=cache)  # several new tokens at once (the masked branch)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # one token at a time into buffers that must grow (3 -> 6 -> 12 -> 24 positions)
        cache = KVCache(model.config.n_layer, capacity=3)
        steps = [model(idx[:, t: t + 1], cache=cache)[0] for t in range(20)]
    assert cache.length == 20 and cache.k[0].shape[2] == 24
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_attention_matches_a_manual_implementation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL)).eval()
    attn = model.transformer.h[0].attn
    x = torch.randn(2, 10, 48)
    B, T, C = x.shape
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, 4, 12).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(12)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, torch.arange(T)), attn.c_proj(y), atol=1e-6, rtol=1e-5)


def test_rope_scores_depend_only_on_the_offset():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        cos_m, sin_m = rope_cos_sin(torch.tensor([m]), 16)
        cos_n, sin_n = rope_cos_sin(torch.tensor([n]), 16)
        return (apply_rope(q, cos_m, sin_m) * apply_rope(k, cos_n, sin_n)).sum().item()

    assert score(5, 2) == pytest.approx(score(105, 102), abs=1e-4)
    assert score(5, 2) == pytest.approx(score(3, 0), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    x = torch.randn(2, 3, 4, 16)
    cos, sin = rope_cos_sin(torch.arange(4), 16)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths


def test_rope_model_runs_beyond_block_size_learned_does_not():
    rope = GPT(GPTConfig(**{**SMALL, "block_size": 16}, position="rope")).eval()
    logits, _ = rope(torch.zeros(1, 40, dtype=torch.long))
    assert logits.shape == (1, 40, 101)
    learned = GPT(GPTConfig(**{**SMALL, "block_size": 16}))
    with pytest.raises(ValueError, match="sequence length 40 exceeds block_size 16"):
        learned(torch.zeros(1, 40, dtype=torch.long))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"n_embd \(50\) must be divisible by n_head \(4\)"):
        GPTConfig(n_embd=50, n_head=4)
    with pytest.raises(ValueError, match="position must be 'learned' or 'rope'"):
        GPTConfig(position="alibi")
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match=r"idx must hold token ids in \[0, 100\], got \[101\]"):
        model(torch.tensor([[1, 101]]))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds block_size"):
        model.generate(torch.zeros(1, 60, dtype=torch.long), 10)
    assert model.generate(torch.zeros(1, 60, dtype=torch.long), 10, crop=True).shape == (1, 70)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2, temperature=0)


def test_training_step_reduces_loss():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL))
    data = torch.randint(0, 10, (4, 33))  # a tiny vocabulary subset: easy to fit
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        _, loss = model(data[:, :-1], targets=data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7


def test_generate_edge_cases():
    model = GPT(GPTConfig(**{**SMALL, "block_size": 16, "dropout": 0.2}))
    model.train()
    full = torch.zeros(1, 16, dtype=torch.long)
    assert model.generate(full, 1).shape == (1, 17)  # the last token is never fed back
    with pytest.raises(ValueError, match="exceeds block_size"):
        model.generate(full, 2)
    assert model.training  # mode restored
    g = lambda cache: model.generate(full[:, :4], 8, generator=torch.Generator().manual_seed(0), use_cache=cache)
    assert torch.equal(g(True), g(False))  # dropout is off while generating
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        model.generate(torch.zeros(5, dtype=torch.long), 2)


def test_loading_an_incomplete_or_untied_state_dict_fails(hf_pair):
    hf, _ = hf_pair
    sd = {k: v for k, v in hf.state_dict().items() if not k.startswith("transformer.ln_f")}
    with pytest.raises(ValueError, match="lacks 2 tensor"):
        GPT.from_hf_state_dict(sd, GPTConfig(**SMALL))
    untied = dict(hf.state_dict())
    untied["lm_head.weight"] = untied["lm_head.weight"].clone() + 1
    with pytest.raises(ValueError, match="not tied"):
        GPT.from_hf_state_dict(untied, GPTConfig(**SMALL))


def test_weights_fingerprint_sees_any_change():
    from utils.model import weights_fingerprint

    torch.manual_seed(0)
    a = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8))
    b = GPT(a.config)
    b.load_state_dict(a.state_dict())
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.transformer.h[0].mlp.c_fc.weight[0, 0] += 1e-7  # one weight, a tiny change
    assert weights_fingerprint(a) != weights_fingerprint(b)


@pytest.mark.parametrize("greedy", [True, False])
def test_generate_with_a_stop_token_matches_generation_without_it(greedy):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**SMALL, "block_size": 32, "vocab_size": 5}))  # few ids: stops come early
    prompt = torch.randint(0, 5, (6, 3))
    g = lambda **kw: model.generate(prompt, 20, greedy=greedy, generator=torch.Generator().manual_seed(1), **kw)
    full, stopped = g(), g(stop_token=2)
    ends = [row.index(2) + 1 if 2 in row else 20 for row in full[:, 3:].tolist()]
    assert stopped.shape[1] == 3 + max(ends)  # it ended when the last row stopped
    for row_full, row_stopped in zip(full[:, 3:].tolist(), stopped[:, 3:].tolist()):
        if 2 in row_full:  # the same tokens up to the first stop, then only stop tokens
            first = row_full.index(2)
            assert row_stopped[: first + 1] == row_full[: first + 1]
            assert set(row_stopped[first:]) == {2}
        else:
            assert row_stopped == row_full
    assert any(2 in row for row in full[:, 3:].tolist())  # the test saw at least one stop
    if not greedy:
        assert max(ends) < 20  # and, sampling, a generation that ended early
    with pytest.raises(ValueError, match=r"stop_token must be an integer in \[0, 4\], got 5"):
        model.generate(prompt, 2, stop_token=5)
