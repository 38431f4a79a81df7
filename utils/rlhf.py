"""Reinforcement learning from a reward model, with a KL leash to the starting model (chapter 10).

The objective of RLHF (Ziegler et al., 2019; Ouyang et al., 2022) for a policy pi that starts as
the SFT model pi_ref:

    maximise  E_{x, y ~ pi} [ r(x, y) ]  -  beta * KL( pi(.|x) || pi_ref(.|x) )

We estimate it per sampled answer y: the reward model's score r(x, y) minus
beta * (log pi(y|x) - log pi_ref(y|x)), whose mean over samples from pi is the KL. The gradient
is REINFORCE (Williams, 1992) with a leave-one-out baseline (RLOO, Ahmadian et al., 2024): each
prompt gets k answers, and each answer's advantage is its score minus the mean score of the
other k - 1, which lowers the variance without adding bias. PPO (Schulman et al., 2017), used by
InstructGPT, adds a clipped ratio and a value network; for answers of a few tokens the plain
estimator is enough.

    policy, log = rlhf(policy, ref, reward_model, tok, questions, RLHFConfig(beta=0.1))

The reward can also be a rule instead of a learned model: ``ExactAnswerReward`` gives 1 to an
answer that is exactly the true one and 0 otherwise, a *verifiable* reward (RL with verifiable
rewards, Lambert et al., 2024), which chapter 10 puts next to the reward model that gets hacked.

``RLHFLog`` records per step what Hugging Face TRL's PPO and RLOO trainers log under these names:
``reward`` is ``objective/scores``, ``kl`` is ``objective/kl``, ``objective`` is
``objective/rlhf_reward`` and ``entropy`` is ``objective/entropy`` (the mean negative
log-probability of the sampled answers).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import torch

from .bpe import BPETokenizer
from .preference import pad_sequences, sequence_logprob
from .sft import answer_text, collate, generate_replies
from .validation import check_real

__all__ = ["sample_answers", "score_batch", "RLHFConfig", "RLHFLog", "rlhf", "answer_kl", "greedy_answers",
           "gold_score", "ExactAnswerReward"]


@torch.no_grad()
def sample_answers(model, tokenizer: BPETokenizer, questions: list[str], k: int = 1, temperature: float = 1.0,
                   max_new_tokens: int = 12, generator: torch.Generator | None = None,
                   greedy: bool = False) -> list[tuple[list[int], list[int]]]:
    """k answers to each question: a list of (prompt ids, answer ids), question by question.

    An answer ends with ``<|endoftext|>`` (kept, as in training) or after ``max_new_tokens``.
    Prompts of equal length are sampled together in one batch (``utils.sft.generate_replies``).
    Defined in chapter 10.
    """
    settings = {"greedy": True} if greedy else {"temperature": temperature, "generator": generator}
    return generate_replies(model, tokenizer, questions, k, max_new_tokens, **settings)


def score_batch(samples: list[tuple[list[int], list[int]]], pad_id: int):
    """(x, y, full, lengths) for a list of (prompt ids, answer ids): (x, y) carry loss on the answer
    (for ``sequence_logprob``), ``full`` and ``lengths`` are the whole sequences for a reward model."""
    examples = [(p + a, [False] * len(p) + [True] * len(a)) for p, a in samples]
    x, y = collate(examples, block_size=max(len(ids) for ids, _ in examples) - 1, pad_id=pad_id)
    full, lengths = pad_sequences(examples, pad_id)
    return x, y, full, lengths


@dataclass
class RLHFConfig:
    beta: float = 0.1  # weight of the KL penalty; 0 lets the policy go anywhere the reward model likes
    steps: int = 60
    prompts_per_step: int = 16
    k: int = 4  # answers sampled per prompt (the leave-one-out baseline needs k >= 2)
    lr: float = 3e-5
    temperature: float = 1.0
    max_new_tokens: int = 12
    seed: int = 0

    def __post_init__(self):
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.k < 2:
            raise ValueError(f"k must be >= 2 for the leave-one-out baseline, got {self.k}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"lr and temperature must be > 0, got lr={self.lr}, temperature={self.temperature}")


@dataclass
class RLHFLog:
    reward: list = field(default_factory=list)  # mean reward-model score of the sampled answers, per step
    kl: list = field(default_factory=list)  # mean log pi(y|x) - log pi_ref(y|x) of the sampled answers
    objective: list = field(default_factory=list)  # reward - beta * kl
    gold: list = field(default_factory=list)  # share of sampled answers the rule prefers (true, exact)
    entropy: list = field(default_factory=list)  # mean -log pi(y|x) of the sampled answers (nats per answer)


class ExactAnswerReward:
    """A rule-based, verifiable reward (chapter 10): ``correct`` for an answer whose text is exactly
    the true answer to its question, ``wrong`` for any other answer.

    Pass it to ``rlhf`` in place of a reward model. It is the gold checker itself, as in RL with
    verifiable rewards (Lambert et al., 2024): nothing learned stands between the policy and the
    goal, so there is no judge to hack. ``questions`` are (question, true answer) pairs.
    """

    def __init__(self, questions: list[tuple[str, str]], correct: float = 1.0, wrong: float = 0.0):
        if not questions:
            raise ValueError("questions must not be empty: give (question, true answer) pairs")
        self.truth = dict(questions)
        self.correct = check_real(correct, "correct")
        self.wrong = check_real(wrong, "wrong")

    def score_answers(self, questions: list[str], answers: list[str]) -> torch.Tensor:
        """The reward of each answer text to its question, as a float tensor of shape (N,)."""
        if len(questions) != len(answers):
            raise ValueError(f"questions and answers must have the same length, got {len(questions)} and "
                             f"{len(answers)}")
        unknown = [q for q in questions if q not in self.truth]
        if unknown:
            raise ValueError(f"questions must be among the {len(self.truth)} questions this reward knows, "
                             f"got {unknown[0]!r}")
        return torch.tensor([self.correct if a == self.truth[q] else self.wrong for q, a in zip(questions, answers)])

    def eval(self):
        """Nothing to switch off (``rlhf`` calls ``eval()`` on its reward model)."""
        return self


def rlhf(policy, ref, reward_model, tokenizer: BPETokenizer, questions: list[tuple[str, str]],
         config: RLHFConfig | None = None, progress: bool = True):
    """Train a copy of ``policy`` to maximise reward - beta * KL to ``ref``. Returns (policy, log).

    ``reward_model`` is a learned reward model (``utils.preference.RewardModel``), called on the
    token ids, or a rule with a ``score_answers(questions, answer_texts)`` method, such as
    ``ExactAnswerReward``. ``questions`` are (question, true answer) pairs; the true answer is
    used only to log the gold score, never for training (unless the reward rule itself uses it).
    An answer cut off at ``max_new_tokens`` (no end token) is scored like any other, at its last
    token, which the reward model never saw in training: one more place a policy could exploit.
    Defined in chapter 10.
    """
    from tqdm.auto import tqdm

    config = RLHFConfig() if config is None else config
    policy = copy.deepcopy(policy).train()
    ref.eval()
    reward_model.eval()
    device = next(policy.parameters()).device
    pad = tokenizer.special_tokens["<|endoftext|>"]
    truth = dict(questions)
    rng = random.Random(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    log = RLHFLog()
    for _ in tqdm(range(config.steps), desc=f"RLHF beta={config.beta}", disable=not progress, leave=False):
        batch = rng.sample(list(truth), config.prompts_per_step)
        samples = sample_answers(policy, tokenizer, batch, config.k, config.temperature, config.max_new_tokens, gen)
        x, y, full, lengths = (t.to(device) for t in score_batch(samples, pad))
        logp = sequence_logprob(policy, x, y)
        texts = [answer_text(tokenizer, a) for _, a in samples]
        with torch.no_grad():
            logp_ref = sequence_logprob(ref, x, y)
            if hasattr(reward_model, "score_answers"):  # a rule, such as ExactAnswerReward
                asked = [q for q in batch for _ in range(config.k)]
                reward = reward_model.score_answers(asked, texts).to(device)
            else:
                reward = reward_model(full, lengths)
            kl = logp.detach() - logp_ref
            score = (reward - config.beta * kl).view(-1, config.k)
            advantage = (score - (score.sum(1, keepdim=True) - score) / (config.k - 1)).flatten()
        loss = -(advantage * logp).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        answers = [truth[q] for q in batch for _ in range(config.k)]
        log.reward.append(reward.mean().item())
        log.kl.append(kl.mean().item())
        log.objective.append(score.mean().item())
        log.gold.append(sum(t == a for t, a in zip(texts, answers)) / len(texts))
        log.entropy.append(-logp.detach().mean().item())
    return policy.eval(), log


@torch.no_grad()
def answer_kl(policy, ref, tokenizer: BPETokenizer, questions: list[str], k: int = 8, seed: int = 0) -> float:
    """KL(pi || pi_ref) on answers, in nats per answer: the mean of log pi(y|x) - log pi_ref(y|x) over
    k answers sampled from pi (temperature 1) for each question. Defined in chapter 10."""
    gen = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    samples = sample_answers(policy, tokenizer, questions, k, generator=gen)
    pad = tokenizer.special_tokens["<|endoftext|>"]
    x, y, _, _ = score_batch(samples, pad)
    device = next(policy.parameters()).device
    x, y = x.to(device), y.to(device)
    return (sequence_logprob(policy.eval(), x, y) - sequence_logprob(ref.eval(), x, y)).mean().item()


def greedy_answers(model, tokenizer: BPETokenizer, questions: list[str], max_new_tokens: int = 12) -> list[str]:
    """The greedy answer text to each question (up to its first newline), prompts batched by length."""
    samples = sample_answers(model, tokenizer, questions, 1, max_new_tokens=max_new_tokens, greedy=True)
    return [answer_text(tokenizer, a) for _, a in samples]


def gold_score(model, tokenizer: BPETokenizer, questions: list[tuple[str, str]]) -> float:
    """Share of (question, true answer) pairs whose greedy answer is exactly the true short answer:
    what the preference rule prefers (true, and a complete sentence). Defined in chapter 10."""
    if not questions:
        raise ValueError("questions must not be empty")
    got = greedy_answers(model, tokenizer, [q for q, _ in questions])
    return sum(g == a for g, (_, a) in zip(got, questions)) / len(questions)
