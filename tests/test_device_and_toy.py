"""utils.device, utils.toy_lm and utils.plotting / explorer."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from utils.device import get_device, seed_everything
from utils.sampling import generate
from utils.toy_lm import BigramLM


def test_get_device_order_and_override(monkeypatch):
    monkeypatch.delenv("LLMCC_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"  # MPS only when asked for
    assert get_device().type == expected
    assert get_device("cpu").type == "cpu"
    monkeypatch.setenv("LLMCC_DEVICE", "cpu")
    assert get_device().type == "cpu"
    with pytest.raises(ValueError, match="prefer must be one of"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="PyTorch sees none"):
            get_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS, which is not available"):
            get_device("mps")


def test_seed_everything_makes_numpy_and_torch_repeat():
    seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    rng = seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert isinstance(rng, np.random.Generator)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        seed_everything(-1)


def test_bigram_counts_are_conditional_probabilities():
    m = BigramLM("a b a c a b")
    a, b, c = (m.stoi[w] for w in "abc")
    assert m.probs[a, b] == pytest.approx(2 / 3) and m.probs[a, c] == pytest.approx(1 / 3)
    np.testing.assert_allclose(m.probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(m.next_logits([a])), m.probs[a])


def test_greedy_loops_on_the_chapter_corpus():
    m = BigramLM()
    words = m.decode(generate(m.next_logits, m.encode("the"), 12, greedy=True)).split()
    assert words[:3] == words[3:6] == words[6:9]


def test_bigram_errors():
    with pytest.raises(ValueError, match="at least 2 words"):
        BigramLM("solo")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BigramLM().encode("the zebra")
    with pytest.raises(ValueError, match="empty sequence"):
        BigramLM().next_logits([])


def test_plots_and_explorer_draw_what_the_sampler_uses():
    from utils.explorer import plot_sampling_grid, sampling_explorer
    from utils.plotting import plot_distribution
    from utils.sampling import next_token_probs

    tokens, logits = ["a", "b", "c", "d"], np.array([2.0, 1.0, 0.0, -1.0])
    fig = plot_sampling_grid(tokens, logits, [dict(temperature=0.5), dict(top_k=2)], ncols=3)
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    heights = [p.get_height() for p in fig.axes[1].patches]
    kept = next_token_probs(logits, top_k=2)
    np.testing.assert_allclose(heights, np.where(kept > 0, kept, next_token_probs(logits)))  # grey: before filtering
    colors = [p.get_facecolor() for p in fig.axes[1].patches]
    assert colors[0] == colors[1] != colors[2] == colors[3]
    panel = sampling_explorer(tokens, logits)
    np.testing.assert_allclose(panel.update(0.7, 0, 0.9), next_token_probs(logits, 0.7, None, 0.9))
    with pytest.raises(ValueError, match="same 1-D vocabulary"):
        plot_distribution(["a"], [0.5, 0.5])
