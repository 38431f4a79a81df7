"""Learning from preferences: sequence log-probabilities, the Bradley-Terry loss, a reward model
and the DPO loss (chapter 10).

Bradley-Terry (1952): the probability that answer a is preferred to answer b is
sigma(r(a) - r(b)) for a score r; a reward model learns r by minimising
-log sigma(r(chosen) - r(rejected)) over human (here: rule-based) preference pairs.

DPO (Rafailov et al., 2023, eq. 7) trains the policy directly, without a reward model:

    L = -log sigma( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

where y_w is the chosen answer, y_l the rejected one, ref the frozen starting (SFT) model and
beta > 0 how strongly the policy is held near it. beta * (log pi - log ref) is DPO's implicit reward.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bpe import BPETokenizer
from .sft import encode_chat

__all__ = ["sequence_logprob", "bradley_terry_loss", "dpo_loss", "RewardModel", "encode_pair", "pad_sequences",
           "preference_batch", "train_reward_model", "reward_accuracy", "dpo"]


def sequence_logprob(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of log q(y_t | x_<=t) over the positions with a target (y != -100), one per row (B,).

    Raises if a row has no target: its log-probability would silently be 0. Defined in chapter 10.
    """
    has_target = (y != -100).any(dim=1)
    if not bool(has_target.all()):
        rows = (~has_target).nonzero().flatten().tolist()
        raise ValueError(f"rows {rows} have no response tokens (every target is -100)")
    logits, _ = model(x)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (picked * (y != -100)).sum(dim=1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigma(r_chosen - r_rejected). Defined in chapter 10."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} must match")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO loss (Rafailov et al., 2023, eq. 7) from sequence log-probabilities, and the implicit
    rewards beta * (log pi - log ref) of the chosen and rejected answers. Defined in chapter 10."""
    if isinstance(beta, bool) or not beta > 0:
        raise ValueError(f"beta must be > 0 (how strongly the policy stays near the reference), got {beta!r}")
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(chosen_reward - rejected_reward).mean(), chosen_reward.detach(), rejected_reward.detach()


class RewardModel(nn.Module):
    """A GPT body with a scalar head on the last token's features: r(prompt + answer). Defined in chapter 10."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.config.n_embd, 1)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T) padded on the right, lengths (B,) the real lengths -> rewards (B,)."""
        if lengths.shape != (x.shape[0],) or bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
            raise ValueError(f"lengths must be (B,) = ({x.shape[0]},) with values in [1, {x.shape[1]}], got {lengths}")
        h = self.body.features(x)  # (B, T, C)
        last = h[torch.arange(x.shape[0], device=x.device), lengths - 1]  # (B, C)
        return self.head(last).squeeze(-1)


def encode_pair(tokenizer: BPETokenizer, prompt: str, chosen: str, rejected: str):
    """The chat encodings (ids, loss mask) of the chosen and the rejected answer. Defined in chapter 10."""
    if chosen == rejected:
        raise ValueError(f"chosen and rejected answers are identical ({chosen!r}): the pair carries no preference")
    return encode_chat(tokenizer, prompt, chosen), encode_chat(tokenizer, prompt, rejected)


def pad_sequences(examples: list[tuple[list[int], list[bool]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, lengths): whole sequences padded on the right, for a reward model. Defined in chapter 10."""
    if not examples or any(len(ids) == 0 for ids, _ in examples):
        raise ValueError("examples must be a non-empty list of non-empty sequences")
    longest = max(len(ids) for ids, _ in examples)
    full = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(examples):
        full[row, : len(ids)] = torch.tensor(ids)
    return full, torch.tensor([len(ids) for ids, _ in examples])


def preference_batch(tokenizer: BPETokenizer, pairs: list[dict]):
    """Encoded chosen and rejected answers of preference pairs (dicts with prompt, chosen, rejected):
    two lists of (ids, loss mask), in the pairs' order."""
    if not pairs:
        raise ValueError("pairs must not be empty")
    encoded = [encode_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    return [c for c, _ in encoded], [r for _, r in encoded]


def train_reward_model(body, tokenizer: BPETokenizer, next_pairs, steps: int = 100, lr: float = 1e-3,
                       seed: int = 0, progress: bool = True) -> tuple[RewardModel, list[float]]:
    """A reward model on a copy of ``body``, trained with the Bradley-Terry loss on batches
    ``next_pairs(step)`` of preference pairs. Returns (reward model, loss per step). Defined in chapter 10."""
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):  # a seeded head, without touching the caller's random state
        torch.manual_seed(seed)
        rm = RewardModel(copy.deepcopy(body)).train()
    device = next(body.parameters()).device
    rm.to(device)
    pad = tokenizer.special_tokens["<|endoftext|>"]
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in tqdm(range(steps), desc="reward model", disable=not progress, leave=False):
        chosen, rejected = preference_batch(tokenizer, next_pairs(step))
        r_chosen = rm(*(t.to(device) for t in pad_sequences(chosen, pad)))
        r_rejected = rm(*(t.to(device) for t in pad_sequences(rejected, pad)))
        loss = bradley_terry_loss(r_chosen, r_rejected)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return rm.eval(), losses


@torch.no_grad()
def reward_accuracy(rm: RewardModel, tokenizer: BPETokenizer, pairs: list[dict]) -> dict:
    """Share of pairs in which the reward model scores the chosen answer higher: overall and by reason."""
    device = next(rm.parameters()).device
    pad = tokenizer.special_tokens["<|endoftext|>"]
    chosen, rejected = preference_batch(tokenizer, pairs)
    right = (rm(*(t.to(device) for t in pad_sequences(chosen, pad)))
             > rm(*(t.to(device) for t in pad_sequences(rejected, pad)))).tolist()
    out = {"all": sum(right) / len(right)}
    for reason in sorted({p.get("reason", "all") for p in pairs} - {"all"}):
        mine = [r for r, p in zip(right, pairs) if p.get("reason") == reason]
        out[reason] = sum(mine) / len(mine)
    return out


def dpo(policy, ref, tokenizer: BPETokenizer, next_pairs, steps: int = 60, beta: float = 0.1, lr: float = 1e-4,
        nll_weight: float = 0.0, progress: bool = True):
    """Train a copy of ``policy`` with the DPO loss on batches ``next_pairs(step)``, against the
    frozen ``ref``. Returns (policy, log) with the loss, the reward margin (implicit reward of the
    chosen minus the rejected answer), the preference accuracy and the mean log-probabilities of the
    chosen and the rejected answers per step (at step 0 every margin is 0, so the accuracy is 0).
    Defined in chapter 10.

    ``nll_weight`` > 0 adds that times the chosen answers' negative log-likelihood per token (as
    in RPO, Pang et al., 2024): it keeps the chosen answers likely, which plain DPO does not.
    """
    from tqdm.auto import tqdm

    from .sft import collate

    if not beta > 0:
        raise ValueError(f"beta must be > 0 (how strongly the policy stays near the reference), got {beta}")
    policy = copy.deepcopy(policy).train()
    ref.eval()
    device = next(policy.parameters()).device
    pad = tokenizer.special_tokens["<|endoftext|>"]
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    if nll_weight < 0:
        raise ValueError(f"nll_weight must be >= 0, got {nll_weight}")
    log = {"loss": [], "nll": [], "margin": [], "accuracy": [], "chosen_logprob": [], "rejected_logprob": []}
    for step in tqdm(range(steps), desc=f"DPO beta={beta}", disable=not progress, leave=False):
        chosen, rejected = preference_batch(tokenizer, next_pairs(step))
        block = max(len(ids) for ids, _ in chosen + rejected) - 1
        xc, yc = (t.to(device) for t in collate(chosen, block, pad))
        xr, yr = (t.to(device) for t in collate(rejected, block, pad))
        with torch.no_grad():
            ref_c, ref_r = sequence_logprob(ref, xc, yc), sequence_logprob(ref, xr, yr)
        policy_c = sequence_logprob(policy, xc, yc)
        policy_r = sequence_logprob(policy, xr, yr)
        preference_loss, r_c, r_r = dpo_loss(policy_c, policy_r, ref_c, ref_r, beta)
        nll = -(policy_c / (yc != -100).sum(dim=1)).mean()  # per token, averaged over the pairs
        loss = preference_loss + nll_weight * nll if nll_weight else preference_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        log["loss"].append(preference_loss.item())  # the DPO loss alone, comparable with and without the NLL term
        log["nll"].append(nll.item())
        log["margin"].append((r_c - r_r).mean().item())
        log["accuracy"].append((r_c > r_r).float().mean().item())
        log["chosen_logprob"].append(policy_c.mean().item())
        log["rejected_logprob"].append(policy_r.mean().item())
    return policy.eval(), log
