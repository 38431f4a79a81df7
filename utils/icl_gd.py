"""In-context learning as gradient descent: one linear self-attention layer = one GD step (chapter 12).

von Oswald et al. (2023), "Transformers learn in-context by gradient descent" (ICML), Proposition 1,
in its simplest form. A prompt of linear-regression examples is a sequence of tokens
e_i = (x_i, y_i), and the query is e_q = (x_q, 0). Gradient descent on the in-context loss

    L(W) = 1 / (2n) * sum_i ||W x_i - y_i||^2,   starting from W = 0, with learning rate eta,

takes one step to  W_1 = (eta / n) * sum_i y_i x_i^T,  and predicts  y_hat = W_1 x_q.

A *linear* self-attention layer (no softmax) with keys and queries that read x and values that
read eta * y computes, at the query token,  (1/n) * sum_i (W_V e_i) (W_K e_i)^T (W_Q e_q), which is
the same sum: the layer's output *is* the prediction after one GD step, for every prompt, with
weights that never change. ``lsa_gd_weights`` builds those weights; the tests and chapter 12 check
the equality numerically and train an LSA layer from random weights to see what it learns.
"""

from __future__ import annotations

import numpy as np

__all__ = ["regression_prompt", "gd_step_prediction", "linear_self_attention", "lsa_gd_weights", "train_lsa"]


def regression_prompt(rng: np.random.Generator, n: int, d_in: int, d_out: int = 1, noise: float = 0.0):
    """A random linear task y = W x (+ noise): n examples X (n, d_in), Y (n, d_out), a query x_q and its y_q."""
    if n < 1 or d_in < 1 or d_out < 1:
        raise ValueError(f"n, d_in and d_out must be >= 1, got {n}, {d_in}, {d_out}")
    W = rng.normal(size=(d_out, d_in))
    X = rng.normal(size=(n + 1, d_in))
    Y = X @ W.T + noise * rng.normal(size=(n + 1, d_out))
    return X[:n], Y[:n], X[n], Y[n]


def gd_step_prediction(X: np.ndarray, Y: np.ndarray, x_q: np.ndarray, lr: float, W0: np.ndarray | None = None):
    """The prediction for x_q after one gradient-descent step on 1/(2n) sum ||W x_i - y_i||^2 from W0 (default 0)."""
    X, Y = np.atleast_2d(X), np.atleast_2d(Y)
    if X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"X and Y need the same number n >= 1 of rows, got {X.shape} and {Y.shape}")
    n = X.shape[0]
    W0 = np.zeros((Y.shape[1], X.shape[1])) if W0 is None else W0
    grad = (X @ W0.T - Y).T @ X / n  # dL/dW
    return (W0 - lr * grad) @ x_q


def linear_self_attention(E: np.ndarray, W_K: np.ndarray, W_Q: np.ndarray, W_V: np.ndarray, P: np.ndarray | None = None):
    """Linear self-attention at the last token (the query) of E (T, d), attending to the T-1 tokens before it:
    e_q + P @ (1/(T-1)) * sum_i (W_V e_i) (W_K e_i)^T (W_Q e_q). No softmax. P projects back (default identity)."""
    if E.ndim != 2 or E.shape[0] < 2:
        raise ValueError(f"E must be (T, d) with T >= 2 (examples and a query), got shape {E.shape}")
    context, e_q = E[:-1], E[-1]
    values, keys, q = context @ W_V.T, context @ W_K.T, W_Q @ e_q
    update = values.T @ (keys @ q) / len(context)
    return e_q + (update if P is None else P @ update)


def lsa_gd_weights(d_in: int, d_out: int, lr: float):
    """W_K, W_Q, W_V of the LSA layer whose output on tokens (x, y) adds the one-step GD prediction to the
    y part of the query token: keys and queries read x, values read lr * y."""
    d = d_in + d_out
    W_K = np.zeros((d, d))
    W_K[:d_in, :d_in] = np.eye(d_in)
    W_Q = W_K.copy()
    W_V = np.zeros((d, d))
    W_V[d_in:, d_in:] = lr * np.eye(d_out)
    return W_K, W_Q, W_V


def train_lsa(d_in: int = 3, n: int = 10, steps: int = 2000, batch: int = 256, lr: float = 1e-2, seed: int = 0):
    """Train one linear self-attention layer (W_K, W_Q, W_V from small random values; PyTorch, Adam) to
    predict y_q from a prompt of ``n`` examples of random linear tasks with 1 output. Returns the three
    weight matrices as NumPy arrays and the loss curve. Chapter 12 compares its predictions with GD's."""
    import torch

    g = torch.Generator().manual_seed(seed)
    d = d_in + 1
    Ws = [torch.nn.Parameter(0.1 * torch.randn(d, d, generator=g)) for _ in range(3)]
    opt = torch.optim.Adam(Ws, lr=lr)
    losses = []
    for _ in range(steps):
        W = torch.randn(batch, 1, d_in, generator=g)
        X = torch.randn(batch, n + 1, d_in, generator=g)
        Y = X @ W.transpose(1, 2)
        E = torch.cat([X, Y], dim=2)
        E[:, -1, d_in:] = 0  # the query's y is what we predict
        W_K, W_Q, W_V = Ws
        context, e_q = E[:, :-1], E[:, -1]
        scores = (context @ W_K.T) @ (W_Q @ e_q.unsqueeze(-1))  # (batch, n, 1)
        out = ((context @ W_V.T) * scores).sum(1) / n  # (batch, d)
        loss = ((out[:, d_in:] - Y[:, -1]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return [w.detach().double().numpy() for w in Ws], losses
