"""Chapter 8's long-context attention methods against direct, loop-by-loop computations.

Linear attention is checked against Katharopoulos et al. (ICML 2020, section 3.2) written out term
by term, normaliser included, and against softmax attention in the limit where the two coincide;
the Longformer masks are checked cell by cell against the rules stated in the docstring.
"""

import numpy as np
import pytest

from utils.attention import causal_mask
from utils.long_context import elu_feature_map, linear_attention, sliding_window_mask


def _elu_plus_one(x):
    """elu(x) + 1 from elu's definition (Clevert et al., 2016): x if x > 0 else exp(x) - 1."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0))) + 1.0


def _normalised_linear_attention_by_loops(Q, K, V, causal):
    """out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j): O(n^2), one term at a time."""
    n = len(Q)
    out = np.zeros((n, V.shape[1]))
    for i in range(n):
        numerator, denominator = np.zeros(V.shape[1]), 0.0
        for j in range(i + 1 if causal else n):
            sim = float(_elu_plus_one(Q[i]) @ _elu_plus_one(K[j]))
            numerator += sim * V[j]
            denominator += sim
        out[i] = numerator / denominator
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", ["linear", "quadratic"])
def test_linear_attention_is_the_normalised_form(order, causal):
    rng = np.random.default_rng(7)
    Q, K = rng.normal(size=(2, 23, 5)) * 2
    V = rng.normal(size=(23, 3))
    expected = _normalised_linear_attention_by_loops(Q, K, V, causal)
    np.testing.assert_allclose(linear_attention(Q, K, V, order=order, causal=causal), expected,
                               rtol=1e-10, atol=1e-12)
    # without the normaliser the result is different (the check is not vacuous)
    fq, fk = _elu_plus_one(Q), _elu_plus_one(K)
    unnormalised = (np.tril(fq @ fk.T) if causal else fq @ fk.T) @ V
    assert not np.allclose(unnormalised, expected)


def test_normalised_rows_are_weighted_averages_of_the_values():
    """The weights of each row are positive and sum to 1, so a constant V passes through unchanged."""
    rng = np.random.default_rng(2)
    Q, K = rng.normal(size=(2, 30, 4))
    V = np.full((30, 2), 3.5)
    for causal in (False, True):
        np.testing.assert_allclose(linear_attention(Q, K, V, causal=causal), V, rtol=1e-12)


def test_feature_map_is_elu_plus_one_and_positive():
    x = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(elu_feature_map(x), _elu_plus_one(x), rtol=1e-12, atol=1e-15)
    assert (elu_feature_map(np.linspace(-300, 30, 331)) > 0).all()


def test_causal_output_of_token_i_ignores_later_tokens():
    rng = np.random.default_rng(3)
    Q, K, V = rng.normal(size=(3, 12, 4))
    out = linear_attention(Q, K, V, causal=True)
    K2, V2 = K.copy(), V.copy()
    K2[8:], V2[8:] = rng.normal(size=(2, 4, 4))
    np.testing.assert_allclose(linear_attention(Q, K2, V2, causal=True)[:8], out[:8], rtol=1e-12)


def test_longformer_global_tokens_encoder_and_decoder():
    n, w, g = 10, 3, 4
    enc = sliding_window_mask(n, w, global_positions=[g], causal=False)
    dec = sliding_window_mask(n, w, global_positions=[g])
    for i in range(n):
        for j in range(n):
            local = abs(i - j) < w
            assert enc[i, j] == (local or i == g or j == g)
            assert dec[i, j] == ((local or i == g or j == g) and j <= i)
    assert enc[g].all() and enc[:, g].all()  # encoder: the global token sees and is seen by all
    assert dec[g, : g + 1].all() and not dec[g, g + 1 :].any()  # decoder: it sees only the past
    assert dec[g:, g].all() and not dec[:g, g].any()  # and is seen only by later tokens
    assert not np.any(dec & ~causal_mask(n))
    np.testing.assert_array_equal(sliding_window_mask(n, w, n_global=2),
                                  sliding_window_mask(n, w, global_positions=[0, 1]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(global_positions=[10]), "global_positions\\[0\\] must be an integer in \\[0, 9\\], got 10"),
    (dict(global_positions=[1.5]), "global_positions\\[0\\] must be an integer"),
    (dict(global_positions="0"), "global_positions must be a list of integer positions"),
    (dict(global_positions=[0], n_global=1), "pass n_global or global_positions, not both"),
    (dict(causal="yes"), "causal must be True or False"),
    (dict(n_global=-1), "n_global must be an integer"),
])
def test_mask_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sliding_window_mask(10, 3, **kwargs)


def test_linear_attention_bad_causal():
    with pytest.raises(ValueError, match="causal must be True or False"):
        linear_attention(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)), causal=1)
