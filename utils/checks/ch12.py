"""Checks for the chapter 12 exercises: in-context learning.

Usage in the notebook::

    from utils.checks import ch12 as check
    check.few_shot_prompt(few_shot_prompt)
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from ..icl_gd import gd_step_prediction, linear_self_attention, lsa_gd_weights, regression_prompt
from ..tiny_world import World
from . import Fail, as_array, call, question

QUESTIONS: dict = {}


@question(QUESTIONS, "q1", "a few-shot prompt", points=2)
def few_shot_prompt(fn):
    world = World(seed=0)
    for seed, relation, shots in [(0, "capital", 2), (1, "job", 3), (2, "home", 1), (3, "export", 0)]:
        prompt, answer = world.few_shot_prompt(random.Random(seed), relation, shots)
        lines = prompt.split("\n")
        examples = [tuple(line.split(" -> ")) for line in lines[:-1]]
        query = lines[-1][: -len(" ->")]
        got = call(fn, examples, query)
        if got is None:
            raise Fail("few_shot_prompt returned None: did you forget `return`?")
        if got == prompt + "\n" or got == prompt + " ":
            raise Fail("end the prompt right after ' ->' of the query: the model writes the space and the value")
        if got != prompt:
            raise Fail(f"for examples {examples} and query {query!r}: expected {prompt!r}, got {got!r}")
    return "one 'subject -> value' line per example, then 'query ->'"


@question(QUESTIONS, "q2", "an induction score", points=2)
def induction_score(fn):
    g = torch.Generator().manual_seed(0)
    length, heads = 6, 3
    att = torch.rand(heads, 2 * length, 2 * length, generator=g).tril()
    att = att / att.sum(-1, keepdim=True)
    query = torch.arange(length, 2 * length - 1)
    expected = att[:, query, query - length + 1].mean(-1)
    got = call(fn, att, length)
    if got is None:
        raise Fail("induction_score returned None: did you forget `return`?")
    got = torch.as_tensor(got, dtype=att.dtype)
    if got.shape != (heads,):
        raise Fail(f"return one score per head, shape ({heads},), got {tuple(got.shape)}")
    if torch.allclose(got, att[:, query, query - length].mean(-1)):
        raise Fail("that is attention to the earlier occurrence itself; an induction head attends to the token AFTER it")
    if torch.allclose(got, att[:, query, query - 1].mean(-1)):
        raise Fail("that is attention to the previous token (a previous-token head), not induction")
    if not torch.allclose(got, expected):
        raise Fail(f"expected {expected.numpy().round(4).tolist()}, got {got.numpy().round(4).tolist()}: from each "
                   f"query t = length .. 2*length - 2, the weight on key t - length + 1, averaged over t")
    return "mean attention from the second copy to the token after each token's first occurrence"


@question(QUESTIONS, "q3", "a posterior over tasks", points=2)
def posterior(fn):
    prior = np.array([0.25, 0.25, 0.25, 0.25])
    like = np.array([[0.9, 0.05, 0.0, 0.0], [0.9, 0.05, 0.0, 0.0]])
    expected = prior * like.prod(0)
    expected /= expected.sum()
    got = as_array(call(fn, prior, like), "posterior")
    if got.shape != prior.shape:
        raise Fail(f"return one probability per task, shape {prior.shape}, got {got.shape}")
    if np.allclose(got, prior * like.prod(0)):
        raise Fail("normalise: the posterior must sum to 1")
    if np.allclose(got, (prior * like.sum(0)) / (prior * like.sum(0)).sum()):
        raise Fail("examples are independent evidence: MULTIPLY their likelihoods (add their logs), do not add them")
    if not np.allclose(got, expected):
        raise Fail(f"expected {expected.round(4).tolist()}, got {got.round(4).tolist()}")
    many = np.tile([[0.01, 0.001]], (400, 1))  # 400 examples: the product underflows to 0 in float64
    got = as_array(call(fn, np.array([0.5, 0.5]), many), "posterior")
    if not np.all(np.isfinite(got)) or not np.allclose(got, [1.0, 0.0]):
        raise Fail(f"with 400 examples the products underflow to 0 and you get {got.tolist()}; add log-likelihoods and "
                   "subtract their maximum before exponentiating")
    return "prior times the product of likelihoods, normalised, computed in log space"


@question(QUESTIONS, "q4", "attention that does gradient descent", points=3)
def gd_attention(fn):
    rng = np.random.default_rng(0)
    for d_in, n, lr in [(3, 10, 0.5), (2, 4, 1.3), (5, 20, 0.1)]:
        X, Y, x_q, _ = regression_prompt(rng, n, d_in)
        expected = gd_step_prediction(X, Y, x_q, lr)
        E = np.vstack([np.hstack([X, Y]), np.hstack([x_q, [0.0]])])
        via_attention = linear_self_attention(E, *lsa_gd_weights(d_in, 1, lr))[d_in:]
        assert np.allclose(expected, via_attention)
        got = as_array(call(fn, X, Y, x_q, lr), "attention_prediction").reshape(-1)
        if got.shape != (1,):
            raise Fail(f"return the prediction for the query, one number (or shape (1,)), got shape {got.shape}")
        if math.isclose(got[0], expected[0] * n, rel_tol=1e-6):
            raise Fail("divide the sum by n, the number of examples (the mean of the in-context loss)")
        if math.isclose(got[0], -expected[0], rel_tol=1e-6):
            raise Fail("the sign: one step from W = 0 moves towards the data, lr/n * sum y_i (x_i . x_q)")
        if not math.isclose(got[0], expected[0], rel_tol=1e-6, abs_tol=1e-9):
            raise Fail(f"expected {expected[0]:.6f}, got {got[0]:.6f}: lr / n * sum_i y_i * (x_i . x_q)")
    return "attention weights x_i . x_q, values lr * y_i: one GD step"
