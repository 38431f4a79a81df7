"""Supervised fine-tuning on the tiny world: the chat template and the loss mask (chapter 9).

    ids, mask = encode_chat(tok, "How old is Vogri?", "Ask Vogri and you learn that he is 56.")
    x, y = collate([(ids, mask), ...], block_size=64, pad_id=eot)   # -100 wherever mask is False

The template wraps a question and an answer in the world tokenizer's special tokens:

    <|endoftext|><|user|>How old is Vogri?\\n<|assistant|>Ask Vogri and you learn that he is 56.\\n<|endoftext|>

Only the answer and the final ``<|endoftext|>`` carry loss: the model should learn to write
answers (and to stop), not to predict the user's questions. Chapter 9 fine-tunes the reference
model (``utils.pretraining.load_reference``) this way and scores it on questions about people
it saw in pretraining but never in fine-tuning.
"""

from __future__ import annotations

import random

import torch

from .bpe import BPETokenizer
from .model import GPT
from .tiny_world import World
from .train import TrainConfig, Trainer
from .validation import check_int

__all__ = ["chat_prompt", "encode_chat", "collate", "SFTBatches", "answer", "answer_accuracy", "answer_text",
           "generate_replies",
           "split_subjects", "relative_change",
           "SFT_TRAIN", "SFT_BLOCK_SIZE", "SFT_BATCH_SIZE", "finetune_reference", "load_sft_model", "SFT_FILE"]


def chat_prompt(question: str) -> str:
    """The text the model sees before it answers. Defined in chapter 9."""
    return f"<|endoftext|><|user|>{question}\n<|assistant|>"


def encode_chat(tokenizer: BPETokenizer, question: str, answer: str) -> tuple[list[int], list[bool]]:
    """Token ids of one exchange, and for each id whether predicting it carries loss. Defined in chapter 9.

    ``mask[i]`` says whether token i is a target: True for the answer's tokens and the closing
    ``<|endoftext|>``, False for the template and the question.
    """
    if not question.strip() or not answer.strip():
        raise ValueError(f"question and answer must not be empty, got {question!r} and {answer!r}")
    prompt = tokenizer.encode(chat_prompt(question), allowed_special="all")
    reply = tokenizer.encode_ordinary(answer + "\n") + [tokenizer.special_tokens["<|endoftext|>"]]
    return prompt + reply, [False] * len(prompt) + [True] * len(reply)


def collate(examples: list[tuple[list[int], list[bool]]], block_size: int, pad_id: int):
    """(x, y) of shape (B, block_size): y is the next token where it carries loss, else -100.

    Raises if an example is longer than ``block_size`` + 1 or if the batch has no target at all
    (a batch of prompts only would give a NaN loss). Defined in chapter 9.
    """
    if not examples:
        raise ValueError("examples must not be empty")
    block_size = check_int(block_size, "block_size", minimum=1)
    pad_id = check_int(pad_id, "pad_id", minimum=0)
    x = torch.full((len(examples), block_size), pad_id, dtype=torch.long)
    y = torch.full((len(examples), block_size), -100, dtype=torch.long)
    for row, (ids, mask) in enumerate(examples):
        if len(ids) != len(mask):
            raise ValueError(f"example {row}: {len(ids)} ids but {len(mask)} mask values")
        if len(ids) - 1 > block_size:
            raise ValueError(f"example {row} has {len(ids)} tokens, more than block_size + 1 = {block_size + 1}")
        n = len(ids) - 1
        x[row, :n] = torch.tensor(ids[:-1])
        targets = torch.tensor(ids[1:])
        y[row, :n] = torch.where(torch.tensor(mask[1:]), targets, torch.tensor(-100))
    if bool((y == -100).all()):
        raise ValueError("the batch has no response tokens: every target is masked, so the loss would be NaN")
    return x, y


def split_subjects(world: World, held_out_fraction: float = 0.5, seed: int = 0) -> tuple[set, set]:
    """(fine-tuning subjects, held-out subjects): a seeded split of the countries and of the people."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    rng = random.Random(seed)
    train, held = set(), set()
    for names in (list(world.countries), list(world.people)):
        names = names[:]
        rng.shuffle(names)
        k = max(1, round(len(names) * held_out_fraction))
        held.update(names[:k])
        train.update(names[k:])
    return train, held


class SFTBatches:
    """Deterministic batches of chat exchanges about ``subjects`` (chapter 9); ``seed`` picks the exchanges."""

    SEEDS = {"train": 31, "val": 32}

    def __init__(self, world: World, tokenizer: BPETokenizer, subjects: set, block_size: int, batch_size: int,
                 style: str = "short", seed: int = 0):
        self.world, self.tokenizer, self.subjects, self.style = world, tokenizer, subjects, style
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.pad = tokenizer.special_tokens["<|endoftext|>"]

    def get_batch(self, split: str, step: int):
        if split not in self.SEEDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        rng = random.Random(self.seed * 1_000_003 + self.SEEDS[split] * 7_919_993 + step)
        pairs = self.world.instruction_pairs(rng, self.batch_size, subjects=self.subjects, style=self.style)
        return collate([encode_chat(self.tokenizer, q, a) for q, a in pairs], self.block_size, self.pad)


@torch.no_grad()
def answer(model, tokenizer: BPETokenizer, question: str, max_new_tokens: int = 24, **sampling) -> str:
    """The model's reply to ``question`` in the chat template, up to its first newline or
    ``<|endoftext|>``; greedy unless sampling settings are given. Defined in chapter 9."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(chat_prompt(question), allowed_special="all")], device=device)
    settings = sampling or {"greedy": True}
    return answer_text(tokenizer, model.generate(ids, max_new_tokens, **settings)[0, ids.shape[1]:].tolist())


@torch.no_grad()
def generate_replies(model, tokenizer: BPETokenizer, questions: list[str], k: int = 1, max_new_tokens: int = 24,
                     **sampling) -> list[tuple[list[int], list[int]]]:
    """k replies to each question in the chat template: (prompt ids, reply ids), question by question.

    Greedy unless sampling settings (``temperature``, ``generator``, ...) are given. A reply ends
    with ``<|endoftext|>`` (kept) or after ``max_new_tokens``. Prompts of equal length are generated
    together in one batch, which stops once every reply in it has ended; a greedy reply is the
    one ``answer`` gives. Defined in chapter 9 (chapter 10 samples with it).
    """
    if not questions:
        raise ValueError("questions must not be empty")
    k = check_int(k, "k", minimum=1)
    device = next(model.parameters()).device
    eot = tokenizer.special_tokens["<|endoftext|>"]
    prompts = [tokenizer.encode(chat_prompt(q), allowed_special="all") for q in questions]
    settings = sampling or {"greedy": True}
    out: list = [None] * (len(questions) * k)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    for length in sorted(by_length):
        rows = [i for i in by_length[length] for _ in range(k)]
        idx = torch.tensor([prompts[i] for i in rows], device=device)
        new = model.generate(idx, max_new_tokens, stop_token=eot, **settings)[:, length:].tolist()
        seen: dict[int, int] = {}
        for i, ids in zip(rows, new):
            j = seen.get(i, 0)
            seen[i] = j + 1
            out[i * k + j] = (prompts[i], ids[: ids.index(eot) + 1] if eot in ids else ids)
    return out


def answer_text(tokenizer: BPETokenizer, ids: list[int]) -> str:
    """The text of a generated reply: its tokens up to the first ``<|endoftext|>``, decoded, up to
    the first newline. Defined in chapter 9."""
    eot = tokenizer.special_tokens["<|endoftext|>"]
    ids = ids[: ids.index(eot)] if eot in ids else ids
    return tokenizer.decode(ids).split("\n")[0]


def answer_accuracy(model, tokenizer: BPETokenizer, questions: list[tuple[str, str]], match: str = "exact") -> float:
    """Share of (question, true answer) pairs the model's greedy answer gets right. Defined in chapter 9.

    ``match="exact"``: the whole answer must be equal; ``match="fact"``: its last word (the fact,
    e.g. "Miyasville" in "Its capital is Miyasville.") must be equal, whatever the pronoun.
    """
    if not questions:
        raise ValueError("questions must not be empty")
    if match not in ("exact", "fact"):
        raise ValueError(f"match must be 'exact' or 'fact', got {match!r}")
    last = lambda text: text.rstrip(".").split()[-1:]  # noqa: E731
    replies = generate_replies(model, tokenizer, [q for q, _ in questions])
    right = 0
    for (_, a), (_, ids) in zip(questions, replies):
        out = answer_text(tokenizer, ids)
        right += out == a if match == "exact" else last(out) == last(a)
    return right / len(questions)


def relative_change(before, after) -> float:
    """||theta_after - theta_before|| / ||theta_before||, all parameters of two models of the same
    architecture flattened into one vector: how far training moved the weights. Defined in chapter 9."""
    b = torch.cat([p.detach().flatten() for p in before.parameters()])
    a = torch.cat([p.detach().flatten() for p in after.parameters()])
    if a.shape != b.shape:
        raise ValueError(f"the models have different sizes: {b.numel()} and {a.numel()} parameters")
    return ((a - b).norm() / b.norm()).item()


#: Chapter 9's fine-tuning run: 120 steps of 16 exchanges about the fine-tuning half of the subjects.
SFT_TRAIN = TrainConfig(max_steps=120, lr=1e-3, min_lr=1e-4, warmup_steps=10, eval_every=20, eval_batches=4)
SFT_BLOCK_SIZE, SFT_BATCH_SIZE = 48, 16


def finetune_reference(device=None, config: TrainConfig = SFT_TRAIN, seed: int = 0, progress: bool = False):
    """Chapter 9's SFT model: the reference model fine-tuned on short answers about the subjects of
    ``split_subjects(World(0))[0]``, in the order of ``SFTBatches(..., seed=seed)``. Returns (model,
    history). Deterministic on a given machine; about 10 s on a laptop CPU. Chapter 10 starts from it."""
    from .device import seed_everything
    from .pretraining import load_reference, world_tokenizer

    world = World(seed=0)
    tuned_on, _ = split_subjects(world, held_out_fraction=0.5, seed=0)
    data = SFTBatches(world, world_tokenizer(), tuned_on, block_size=SFT_BLOCK_SIZE, batch_size=SFT_BATCH_SIZE,
                      seed=seed)
    seed_everything(seed)
    model, _ = load_reference(device)
    history = Trainer(model, config, data.get_batch).fit(progress=progress)
    return model, history


SFT_FILE = "sft_model.pt"  # finetune_reference(seed=0), stored for chapter 10


def load_sft_model(device=None) -> tuple[GPT, dict]:
    """The stored result of ``finetune_reference(seed=0)`` (a fresh copy each call) and its record
    (configs, seed, the validation losses by step, training time).

    Chapter 10 starts from chapter 9's SFT model; loading it saves the chapter a 15-second run.
    ``python -m utils.sft`` regenerates it. Defined in chapter 9."""
    from .pretraining import load_checkpoint

    return load_checkpoint(SFT_FILE, device)


def _main(argv=None) -> int:
    import argparse
    import json
    import time
    from dataclasses import asdict
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Train chapter 9's SFT model (seed 0) and store it for chapter 10.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / SFT_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    model, history = finetune_reference("cpu", seed=0)
    info = {"model_config": asdict(model.config), "train_config": asdict(SFT_TRAIN), "seed": 0,
            "block_size": SFT_BLOCK_SIZE, "batch_size": SFT_BATCH_SIZE,
            "eval_steps": list(history.eval_steps), "eval_loss": list(history.eval_loss),
            "train_seconds": round(time.perf_counter() - start, 1)}
    torch.save({"model": model.state_dict(), "info": info}, args.out)
    print(json.dumps({k: info[k] for k in ("eval_loss", "train_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
