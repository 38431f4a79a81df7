"""Checks for the chapter 10 exercises: reward models, RLHF and DPO.

Usage in the notebook::

    from utils.checks import ch10 as check
    check.bt_loss(bt_loss)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..preference import bradley_terry_loss, dpo_loss
from . import Fail, call, question

QUESTIONS: dict = {}


def _call(fn, *args):
    got = call(fn, *args)
    if got is None:
        raise Fail("returned None: did you forget `return`?")
    if isinstance(got, (tuple, list)) and got and torch.is_tensor(got[0]) and got[0].dim() == 0:
        raise Fail("return the loss alone (one number), not a tuple")
    try:
        return torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise Fail(f"return a tensor (or a number), got {type(got).__name__}") from None


@question(QUESTIONS, "q1", "the Bradley-Terry loss", points=2)
def bt_loss(fn):
    chosen = torch.tensor([2.0, 0.5, -1.0, 3.0], dtype=torch.float64)
    rejected = torch.tensor([1.0, 0.5, 0.0, -2.0], dtype=torch.float64)
    expected = bradley_terry_loss(chosen, rejected).item()
    got = _call(fn, chosen.clone(), rejected.clone())
    if got.numel() != 1:
        raise Fail(f"return one number, the mean over the pairs; got a tensor of shape {tuple(got.shape)}")
    got = got.item()
    swapped = bradley_terry_loss(rejected, chosen).item()
    if math.isclose(got, swapped, rel_tol=1e-6):
        raise Fail("the signs are swapped: the loss is small when the CHOSEN answer has the higher reward, "
                   "-log sigmoid(r_chosen - r_rejected)")
    if math.isclose(got, -F.logsigmoid(chosen - rejected).sum().item(), rel_tol=1e-6):
        raise Fail("that is the sum over the pairs; take the mean")
    if math.isclose(got, torch.sigmoid(chosen - rejected).mean().item(), rel_tol=1e-6):
        raise Fail("that is the mean probability of the preference; the loss is its negative LOG")
    if not math.isclose(got, expected, rel_tol=1e-6):
        raise Fail(f"got {got:.6f}, expected {expected:.6f} = mean of -log sigmoid(r_chosen - r_rejected)")
    tie = _call(fn, torch.zeros(3), torch.zeros(3)).item()
    if not math.isclose(tie, math.log(2), rel_tol=1e-6):
        raise Fail(f"equal rewards should give log 2 = {math.log(2):.4f}, got {tie:.4f}")
    big = _call(fn, torch.tensor([200.0]), torch.tensor([-200.0])).item()
    small = _call(fn, torch.tensor([-200.0]), torch.tensor([200.0])).item()
    if not (math.isfinite(big) and math.isfinite(small)):
        raise Fail("a reward difference of 400 gave a non-finite loss; use F.logsigmoid, which is stable, "
                   "rather than log(sigmoid(...))")
    return f"{expected:.4f}; equal rewards give log 2"


@question(QUESTIONS, "q2", "the DPO loss", points=3)
def dpo(fn):
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-10 * torch.rand(5, generator=g, dtype=torch.float64) for _ in range(4))
    beta = 0.3
    expected = dpo_loss(pc, pr, rc, rr, beta)[0].item()
    got = _call(fn, pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta)
    if got.numel() != 1:
        raise Fail(f"return one number, the mean over the pairs; got a tensor of shape {tuple(got.shape)}")
    got = got.item()
    no_ref = (-F.logsigmoid(beta * (pc - pr))).mean().item()
    if math.isclose(got, no_ref, rel_tol=1e-6):
        raise Fail("the reference model's log-probabilities are missing: each answer's term is "
                   "log pi(y|x) - log pi_ref(y|x)")
    outside = (-F.logsigmoid((pc - rc) - (pr - rr)) * beta).mean().item()
    if math.isclose(got, outside, rel_tol=1e-6):
        raise Fail("beta multiplies the difference INSIDE the sigmoid, not the loss")
    if math.isclose(got, dpo_loss(pr, pc, rr, rc, beta)[0].item(), rel_tol=1e-6):
        raise Fail("the margin has the wrong sign: it is (log pi(chosen) - log ref(chosen)) - "
                   "(log pi(rejected) - log ref(rejected)); check the order of chosen/rejected and policy/reference")
    if not math.isclose(got, expected, rel_tol=1e-6):
        raise Fail(f"got {got:.6f}, expected {expected:.6f}: -log sigmoid(beta * [(pc - rc) - (pr - rr)]), "
                   "averaged over the pairs")
    same = _call(fn, pc, pr, pc, pr, beta).item()
    if not math.isclose(same, math.log(2), rel_tol=1e-6):
        raise Fail(f"when the policy equals the reference the loss must be log 2, got {same:.4f}")
    _check_dpo_gradient(fn, pc, pr, rc, rr, beta)
    return f"{expected:.4f}; log 2 when the policy is the reference"


def _check_dpo_gradient(fn, pc, pr, rc, rr, beta) -> None:
    """DPO trains the policy through this loss: its gradient must reach the policy's log-probabilities
    (the training cell after the question calls loss.backward()), and be the right one."""
    policy = [t.clone().requires_grad_(True) for t in (pc, pr)]
    loss = call(fn, *policy, rc, rr, beta)
    if not torch.is_tensor(loss) or not loss.requires_grad:
        raise Fail("the value is right, but it carries no gradient (a float, .item(), .detach() or torch.no_grad() "
                   "cuts it off): return the loss tensor itself, so that loss.backward() can train the policy")
    loss.backward()
    expected = [t.clone().requires_grad_(True) for t in (pc, pr)]
    dpo_loss(*expected, rc, rr, beta)[0].backward()
    for got, want, name in zip(policy, expected, ("policy_chosen", "policy_rejected")):
        if got.grad is None or not torch.allclose(got.grad, want.grad):
            raise Fail(f"the value is right, but the gradient with respect to {name} is not: compute the loss from "
                       "the tensors you were given, with torch operations only")


@question(QUESTIONS, "q3", "the leave-one-out baseline", points=2)
def loo_advantages(fn):
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 4.0, -4.0], dtype=torch.float64)
    k = 4
    s = scores.view(-1, k)
    expected = (s - (s.sum(1, keepdim=True) - s) / (k - 1)).flatten()
    got = _call(fn, scores.clone(), k)
    if got.shape != expected.shape:
        raise Fail(f"return one advantage per score, shape {tuple(expected.shape)}; got {tuple(got.shape)}")
    with_self = (s - s.mean(1, keepdim=True)).flatten()
    if torch.allclose(got, with_self):
        raise Fail("that subtracts the mean of all k scores, the answer's own included; the baseline is the mean of "
                   "the OTHER k - 1 answers to the same question")
    whole = scores - scores.mean()
    if torch.allclose(got, whole):
        raise Fail("the baseline must come from the answers to the SAME question (each group of k), "
                   "not from the whole batch")
    if not torch.allclose(got, expected):
        raise Fail(f"for scores {scores.tolist()} and k={k}, expected {expected.tolist()}, got {got.tolist()}")
    for k in (2, 8):  # the group size must come from k, not be fixed
        s = scores.view(-1, k)
        other = (s - (s.sum(1, keepdim=True) - s) / (k - 1)).flatten()
        got = _call(fn, scores.clone(), k)
        if got.shape != other.shape or not torch.allclose(got, other):
            raise Fail(f"right for k=4 but not for k={k}: use k for the group size and k - 1 for the others")
    return "each answer is compared with the other answers to its question"


@question(QUESTIONS, "q4", "the KL-penalised score", points=1)
def penalised_score(fn):
    reward = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    logp = torch.tensor([-1.0, -3.0, -0.5], dtype=torch.float64)
    logp_ref = torch.tensor([-2.0, -2.5, -0.5], dtype=torch.float64)
    beta = 0.2
    expected = reward - beta * (logp - logp_ref)
    got = _call(fn, reward.clone(), logp.clone(), logp_ref.clone(), beta)
    if got.shape == expected.shape and torch.allclose(got, reward + beta * (logp - logp_ref)):
        raise Fail("the penalty is SUBTRACTED: an answer more likely under the policy than under the reference has "
                   "drifted, and pays beta * (log pi - log pi_ref)")
    if got.shape != expected.shape or not torch.allclose(got, expected):
        raise Fail(f"expected {expected.tolist()}, got {got.tolist()}: r - beta * (log pi - log pi_ref), per answer")
    return "reward minus beta times the log-ratio"
