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

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bpe import BPETokenizer
from .sft import encode_chat

__all__ = ["sequence_logprob", "bradley_terry_loss", "dpo_loss", "RewardModel", "encode_pair"]


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
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (how strongly the policy stays near the reference), got {beta}")
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
