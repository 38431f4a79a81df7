"""Chapter 4's claims about embeddings and order, checked beyond the chapter's one example."""

import numpy as np
import pytest
import torch

from utils.attention import causal_mask, scaled_dot_product_attention
from utils.positions import apply_rope
from utils.pretraining import load_reference, world_tokenizer
from utils.tiny_world import World

RNG = np.random.default_rng(4)


def _layer(d, rng):
    W_q, W_k, W_v = rng.normal(size=(3, d, d)) / np.sqrt(d)
    return lambda x: scaled_dot_product_attention(x @ W_q, x @ W_k, x @ W_v, causal_mask(len(x)))


@pytest.mark.parametrize("trial", range(5))
def test_one_causal_layer_sees_its_prefix_as_an_unordered_set(trial):
    rng = np.random.default_rng(trial)
    d, T = 8, 7
    layer = _layer(d, rng)
    x = rng.normal(size=(T, d))
    perm = np.concatenate([rng.permutation(T - 1), [T - 1]])  # shuffle the prefix, keep the last
    np.testing.assert_allclose(layer(x[perm])[-1], layer(x)[-1], atol=1e-12)
    # earlier positions see different prefixes, so their outputs change
    assert not np.allclose(layer(x[perm])[perm != np.arange(T)], layer(x)[perm][perm != np.arange(T)])


def test_two_causal_layers_with_residuals_see_order():
    d, T = 8, 5
    first, second = _layer(d, RNG), _layer(d, RNG)

    def two(x):
        h = x + first(x)
        return h + second(h)

    x = RNG.normal(size=(T, d))
    swapped = x[[1, 0, 2, 3, 4]]
    np.testing.assert_allclose(first(swapped)[-1], first(x)[-1], atol=1e-12)
    assert np.abs(two(swapped)[-1] - two(x)[-1]).max() > 1e-3


def test_uniform_attention_counts_the_prefix_from_a_start_token():
    T = 50
    values = np.zeros((T, 2))
    values[0, 0], values[1:, 1] = 1.0, 1.0
    flat = np.zeros((T, 3))
    share = scaled_dot_product_attention(flat, flat, values, causal_mask(T))[:, 0]
    np.testing.assert_allclose(share, 1 / np.arange(1, T + 1), rtol=1e-12)


def test_rope_in_two_dimensions_is_the_rotation_matrix():
    for angle in (0.0, 0.3, -2.0, 7.5):
        v = RNG.normal(size=(1, 2))
        c, s = np.cos(angle), np.sin(angle)
        np.testing.assert_allclose(apply_rope(v, [angle])[0], np.array([[c, -s], [s, c]]) @ v[0])


def test_reference_embeddings_put_words_of_a_kind_together():
    """Section 4.1: nearly all of the 5 nearest neighbours (cosine) are of the same kind; random vectors: almost none."""
    model, _ = load_reference()
    tok, world = world_tokenizer(), World(0)
    groups = {"country": list(world.countries), "capital": [c["capital"] for c in world.countries.values()],
              "job": {p["job"] for p in world.people.values()}, "export": {c["export"] for c in world.countries.values()}}
    ids = {}
    for g, words in groups.items():
        for w in words:
            t = tok.encode_ordinary(" " + w)
            if len(t) == 1:
                ids[t[0]] = g
    for name, E in (("trained", model.transformer.wte.weight.detach().double()),
                    ("random", torch.from_numpy(np.random.default_rng(0).normal(size=(512, 128))))):
        unit = E / E.norm(dim=1, keepdim=True)
        cos = unit @ unit.T
        cos.fill_diagonal_(-2.0)
        same = [ids.get(int(j)) == g for i, g in ids.items() for j in torch.topk(cos[i], 5).indices]
        share = sum(same) / len(same)
        assert share > 0.8 if name == "trained" else share < 0.2, (name, share)
