"""NumPy references == the PyTorch model == torch SDPA; the position encodings' stated properties."""

import numpy as np
import pytest
import torch

from utils.attention import causal_mask, multi_head_attention, scaled_dot_product_attention
from utils.model import GPT, GPTConfig, rope_cos_sin
from utils.model import apply_rope as torch_rope
from utils.positions import apply_rope, frequencies, shift_matrix, sinusoidal_encoding

RNG = np.random.default_rng(0)


def test_worked_example_of_chapter_5():
    X = np.array([[1, 0], [0, 1], [1, 1]], dtype=float)
    out, w = scaled_dot_product_attention(X, X, X, return_weights=True)
    np.testing.assert_allclose(w.round(3), [[0.401, 0.198, 0.401], [0.198, 0.401, 0.401], [0.248, 0.248, 0.503]])
    np.testing.assert_allclose(out.round(3), [[0.802, 0.599], [0.599, 0.802], [0.752, 0.752]])


@pytest.mark.parametrize("causal", [False, True])
def test_numpy_attention_equals_torch_sdpa(causal):
    Q, K, V = RNG.normal(size=(3, 9, 6))
    ours = scaled_dot_product_attention(Q, K, V, causal_mask(9) if causal else None)
    sdpa = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(a) for a in (Q, K, V)), is_causal=causal)
    np.testing.assert_allclose(ours, sdpa.numpy(), atol=1e-12)


def test_numpy_multi_head_equals_the_model_attention_module():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=4, n_embd=32)).double().eval()
    attn = model.transformer.h[0].attn
    x = RNG.normal(size=(10, 32))
    with torch.no_grad():
        theirs = attn(torch.tensor(x)[None], torch.arange(10))[0].numpy()
    W = lambda lin: lin.weight.detach().numpy().T  # nn.Linear stores (out, in)
    b = lambda lin: lin.bias.detach().numpy()
    ours = multi_head_attention(x, W(attn.c_attn), b(attn.c_attn), W(attn.c_proj), b(attn.c_proj), n_head=4)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


def test_attention_errors():
    with pytest.raises(ValueError, match="expected Q"):
        scaled_dot_product_attention(np.zeros((3, 2)), np.zeros((3, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least one key"):
        scaled_dot_product_attention(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="divisible by n_head"):
        multi_head_attention(np.zeros((2, 6)), np.zeros((6, 18)), np.zeros(18), np.zeros((6, 6)), np.zeros(6), 4)


def test_sinusoidal_formula_and_shift_is_a_rotation():
    pe = sinusoidal_encoding(50, 16)
    np.testing.assert_allclose(pe[0], [0, 1] * 8)
    np.testing.assert_allclose(pe[7, 2], np.sin(7 / 10000 ** (2 / 16)))
    np.testing.assert_allclose(pe[7, 3], np.cos(7 / 10000 ** (2 / 16)))
    M = shift_matrix(5, 16)
    np.testing.assert_allclose(pe[5:] , pe[:-5] @ M.T, atol=1e-12)  # PE(pos + 5) = M_5 PE(pos) for every pos
    np.testing.assert_allclose(M @ M.T, np.eye(16), atol=1e-12)  # orthogonal: a rotation


def test_rope_numpy_equals_the_model_and_depends_on_offsets_only():
    x = RNG.normal(size=(6, 16))
    pos = np.arange(6)
    cos, sin = rope_cos_sin(torch.tensor(pos), 16)
    theirs = torch_rope(torch.tensor(x)[None, None], cos, sin)[0, 0].numpy()
    np.testing.assert_allclose(apply_rope(x, pos), theirs, atol=1e-6)
    q, k = RNG.normal(size=(2, 16))
    score = lambda m, n: apply_rope(q[None], [m]) @ apply_rope(k[None], [n]).T
    np.testing.assert_allclose(score(7, 3), score(107, 103), atol=1e-10)
    assert not np.allclose(score(7, 3), score(7, 5))


def test_position_errors():
    with pytest.raises(ValueError, match="d_model must be an even integer"):
        sinusoidal_encoding(4, 7)
    with pytest.raises(ValueError, match="positions must have shape"):
        apply_rope(np.zeros((3, 4)), [0, 1])
    assert frequencies(4)[0] == 1.0


def test_numpy_ffn_equals_the_model_mlp():
    from utils.ffn_memory import ffn
    from utils.model import MLP

    mlp = MLP(GPTConfig(n_embd=16, n_head=1)).double().eval()
    x = RNG.normal(size=(5, 16))
    W1, b1 = mlp.c_fc.weight.detach().numpy().T, mlp.c_fc.bias.detach().numpy()
    W2, b2 = mlp.c_proj.weight.detach().numpy().T, mlp.c_proj.bias.detach().numpy()
    with torch.no_grad():
        np.testing.assert_allclose(ffn(x, W1, b1, W2, b2), mlp(torch.tensor(x)).numpy(), atol=1e-12)


def test_autocast_is_a_no_op_on_cpu(monkeypatch):
    import contextlib

    from utils.device import autocast_for

    monkeypatch.delenv("LLMCC_AUTOCAST", raising=False)
    assert isinstance(autocast_for("cpu"), contextlib.nullcontext)
    assert isinstance(autocast_for(torch.device("cpu")), contextlib.nullcontext)


def test_bf16_only_where_native_and_forced_bf16_trains_on_cpu(monkeypatch):
    """A T4 (7.5) only emulates bf16 and stays in float32; bf16 forced on the CPU runs the real path."""
    from utils.device import autocast_for, bf16_autocast_enabled
    from utils.model import GPT, GPTConfig

    monkeypatch.delenv("LLMCC_AUTOCAST", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert bf16_autocast_enabled("cuda") is native, capability
    monkeypatch.undo()
    monkeypatch.setenv("LLMCC_AUTOCAST", "off")
    assert not bf16_autocast_enabled("cpu")
    monkeypatch.setenv("LLMCC_AUTOCAST", "fp8")
    with pytest.raises(ValueError, match="LLMCC_AUTOCAST must be"):
        bf16_autocast_enabled("cpu")
    monkeypatch.setenv("LLMCC_AUTOCAST", "bf16")
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=1, n_head=2, n_embd=32))
    x = torch.randint(0, 32, (8, 16))
    with autocast_for("cpu"):
        logits, loss = model(x, x)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = loss.item()
    for _ in range(30):
        with autocast_for("cpu"):
            _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first  # it learns: the bf16 path is not silently broken
