"""Pretraining on the tiny world: tokenizer, batches, the entropy floor and the reference model (chapter 8).

    tok = world_tokenizer()                              # 512-token BPE of the world's text (shipped)
    data = WorldBatches(World(0), tok, sentences_per_row=6, batch_size=32)
    trainer = Trainer(GPT(config), TrainConfig(...), data.get_batch)   # utils.train
    model, info = load_reference()                       # the course's stored checkpoint (chapters 9-13)

Batches. Every row starts with ``<|endoftext|>`` (the "beginning of text" a model predicts the
first sentence from) and then holds a fixed number of whole sentences, each followed by a
newline; the rest of the row is padding whose targets are -100, so it costs no loss. Sentences
are drawn i.i.d. from the world and every one is scored, so a row's loss, averaged over many
rows, estimates exactly the quantity the entropy floor bounds. ``get_batch(split, step)`` is a
pure function of its arguments: "train" and "val" come from different seeds, and every step
gets fresh sentences (the model never sees the same batch twice).

Tokenizer. The world tokenizer is chapter 2's BPE trained on the world's own text, with
GPT-2's pre-split pattern except that digits are split one by one (as Llama does), so that an
age such as 27 is two tokens. (The arithmetic of chapters 11 and 13 does not use it: it has
its own character tokenizer in ``utils.arithmetic``.)

Reference model. ``python -m utils.pretraining`` trains ``REFERENCE_CONFIG`` for
``REFERENCE_TRAIN`` steps deterministically on the CPU (a few minutes on 2 cores) and writes
``utils/data/reference_model.pt`` with its evaluation loss; ``--check`` only re-evaluates.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from .bpe import BPETokenizer
from .model import GPT, GPTConfig
from .tiny_world import FACT_SLOTS, TEMPLATES, World, addition_example
from .train import TrainConfig, Trainer

__all__ = ["WORLD_PATTERN", "SPECIAL_TOKENS", "train_world_tokenizer", "world_tokenizer", "pack_row", "WorldBatches",
           "CopyBatches", "token_losses", "sentence_losses", "true_token_surprisal", "gap_breakdown",
           "template_probabilities", "exact_cross_entropy", "world_contexts", "fact_accuracy",
           "SMALL_CONFIG", "SMALL_TRAIN", "SMALL_SENTENCES_PER_ROW", "REFERENCE_CONFIG", "REFERENCE_TRAIN", "REFERENCE_DATA",
           "load_reference", "load_checkpoint", "train_reference", "per_position_loss"]

#: GPT-2's pattern (utils.bpe.GPT2_PATTERN) with ``\p{N}`` instead of `` ?\p{N}+``: one token per digit.
WORLD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|assistant|>"]
WORLD_VOCAB_SIZE = 512
WORLD_TOKENIZER_FILE = "world_tokenizer.json"


def train_world_tokenizer(world: World | None = None, vocab_size: int = WORLD_VOCAB_SIZE) -> BPETokenizer:
    """BPE (chapter 2) trained on the world's sentences, questions and sums. Defined in chapter 8.

    Deterministic: the text is a pure function of the world's seed, so this reproduces the
    shipped ``world_tokenizer()`` exactly (a test checks it).
    """
    world = world or World(0)
    rng = random.Random(1)
    parts = world.corpus(3000, seed=1)
    parts += [f"{q}\n{a}" for q, a in world.instruction_pairs(rng, 500)]
    parts += ["".join(addition_example(rng, rng.randint(1, 4), steps=rng.random() < 0.5)) for _ in range(200)]
    return BPETokenizer(pattern=WORLD_PATTERN, special_tokens=SPECIAL_TOKENS).train("\n".join(parts), vocab_size)


@lru_cache(maxsize=1)
def world_tokenizer() -> BPETokenizer:
    """The shipped world tokenizer (512 tokens: 256 bytes, 253 merges, 3 special tokens). Defined in chapter 8."""
    path = resources.files("utils").joinpath("data", WORLD_TOKENIZER_FILE)
    with resources.as_file(path) as p:
        return BPETokenizer.load(p)


def pack_row(sentences: list[list[int]], bos: int, block_size: int) -> tuple[list[int], list[int], int]:
    """One training row from sentences (token-id lists, each ending in a newline), in order.

    Returns (x, y, n_used): ``x`` is ``bos`` followed by as many whole sentences as fit, ``y`` is
    the same tokens shifted left by one (the next token at every position), and the remainder of
    the row is padding: ``bos`` in ``x``, -100 (no loss) in ``y``. Both have length block_size.

    Example (bos 0, block_size 6): sentences [[5, 6, 1], [7, 1], [8, 8, 1]]
        -> x [0, 5, 6, 1, 7, 0], y [5, 6, 1, 7, 1, -100], n_used 2. Defined in chapter 8.
    """
    ids, n_used = [bos], 0
    while n_used < len(sentences) and len(ids) + len(sentences[n_used]) <= block_size + 1:
        ids += sentences[n_used]
        n_used += 1
    n = len(ids) - 1
    pad = block_size - n
    return ids[:-1] + [bos] * pad, ids[1:] + [-100] * pad, n_used


class WorldBatches:
    """Deterministic batches of world sentences for ``utils.train.Trainer``. Defined in chapter 8.

    Every row is ``<|endoftext|>`` followed by exactly ``sentences_per_row`` sentences, all of
    which carry loss; rows are padded (targets -100) to the longest row of the batch. The number
    of sentences is fixed in advance, never chosen by whether a sentence fits: a rule like "add
    sentences while they fit" makes long sentences more likely at the start of a row and lets a
    model that counts positions beat the entropy floor, so the floor would no longer be a floor.
    ``max_tokens`` is the longest row possible, the ``block_size`` a model needs.
    """

    SEEDS = {"train": 1, "val": 2}

    def __init__(self, world: World, tokenizer: BPETokenizer, sentences_per_row: int, batch_size: int,
                 seed: int = 0):
        if not isinstance(sentences_per_row, int) or sentences_per_row < 1:
            raise ValueError(f"sentences_per_row must be an integer >= 1, got {sentences_per_row!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.world, self.tokenizer = world, tokenizer
        self.sentences_per_row, self.batch_size, self.seed = sentences_per_row, batch_size, seed
        self.bos = tokenizer.special_tokens["<|endoftext|>"]
        self._ids = {s: tokenizer.encode_ordinary(s + "\n") for s, _ in world.all_sentences()}
        self.max_tokens = sentences_per_row * max(map(len, self._ids.values()))

    def get_batch(self, split: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), each (batch_size, width) int64 with width <= max_tokens; y is x shifted left, -100 on padding."""
        if split not in self.SEEDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        rng = random.Random(self.seed * 1_000_003 + self.SEEDS[split] * 7_919_993 + step)
        rows = [[self._ids[self.world.sample_sentence(rng)] for _ in range(self.sentences_per_row)]
                for _ in range(self.batch_size)]
        width = max(sum(map(len, row)) for row in rows)
        packed = [pack_row(row, self.bos, width) for row in rows]
        assert all(n == self.sentences_per_row for _, _, n in packed)
        return torch.tensor([x for x, _, _ in packed]), torch.tensor([y for _, y, _ in packed])


class CopyBatches:
    """Rows "<|endoftext|>A B C = A B C\\n" with loss only on the copy (chapter 8's context experiment).

    Each row holds one ``World.copy_document`` of 1 to ``max_names`` names that fits in
    ``block_size``; predicting the copy needs the model to look back as far as the list is long.
    ``seed`` picks the documents (as in ``WorldBatches``).
    """

    SEEDS = {"train": 11, "val": 12}

    def __init__(self, world: World, tokenizer: BPETokenizer, block_size: int, max_names: int, batch_size: int,
                 seed: int = 0):
        if max_names < 1 or batch_size < 1:
            raise ValueError(f"max_names and batch_size must be >= 1, got {max_names} and {batch_size}")
        self.world, self.tokenizer = world, tokenizer
        self.block_size, self.max_names, self.batch_size, self.seed = block_size, max_names, batch_size, seed
        self.bos = tokenizer.special_tokens["<|endoftext|>"]

    def row(self, rng: random.Random) -> tuple[list[int], list[int]]:
        for _ in range(1000):
            listed, copied = self.world.copy_document(rng, rng.randint(1, self.max_names))
            a, b = self.tokenizer.encode_ordinary(listed), self.tokenizer.encode_ordinary(copied)
            if 1 + len(a) + len(b) <= self.block_size + 1:
                ids = [self.bos] + a + b
                pad = self.block_size + 1 - len(ids)
                return ids[:-1] + [self.bos] * pad, [-100] * len(a) + b + [-100] * pad
        raise ValueError(f"block_size {self.block_size} is too short for a copy document")

    def get_batch(self, split: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.SEEDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        rng = random.Random(self.seed * 1_000_003 + self.SEEDS[split] * 7_919_993 + step)
        rows = [self.row(rng) for _ in range(self.batch_size)]
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


@torch.no_grad()
def token_losses(model: GPT, tokenizer: BPETokenizer, sentences: list[str], context: str = "") -> list[list[float]]:
    """Per-token losses (nats) of each sentence + newline, read after ``<|endoftext|>`` + context.

    ``context`` is text that comes first (e.g. earlier sentences, each ending in a newline); its
    own tokens carry no loss. Defined in chapter 8.
    """
    if not sentences:
        raise ValueError("sentences must not be empty")
    bos = tokenizer.special_tokens["<|endoftext|>"]
    prefix = [bos] + tokenizer.encode_ordinary(context)
    rows = [prefix + tokenizer.encode_ordinary(s + "\n") for s in sentences]
    width = max(map(len, rows)) - 1
    if width > model.config.block_size:
        raise ValueError(f"context + sentence is {width} tokens, more than block_size {model.config.block_size}")
    x = torch.full((len(rows), width), bos, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r) - 1] = torch.tensor(r[:-1])
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, _ = model(x.to(device))
    model.train(was_training)
    log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()  # (N, width, V)
    start = len(prefix) - 1  # the position that predicts the sentence's first token
    return [[-log_probs[i, t, r[t + 1]].item() for t in range(start, len(r) - 1)] for i, r in enumerate(rows)]


def sentence_losses(model: GPT, tokenizer: BPETokenizer, sentences: list[str], context: str = "") -> torch.Tensor:
    """Total loss (nats) of each sentence + newline after ``<|endoftext|>`` + context: its surprisal
    -log q(sentence | context) under the model. Defined in chapter 8.
    """
    return torch.tensor([sum(row) for row in token_losses(model, tokenizer, sentences, context)])


def true_token_surprisal(world: World, tokenizer: BPETokenizer) -> dict[str, list[float]]:
    """For every sentence, -log p(token | earlier tokens of the sentence) under the true world.

    Computed exactly from the sentence probabilities: p(token | prefix) = P(prefix + token) / P(prefix),
    where P(prefix) sums the probabilities of the sentences that start with those tokens. A token
    with surprisal 0 is certain (e.g. a capital once the country is known). The sum over a
    sentence is -log p(sentence). Defined in chapter 8.
    """
    sentences = world.all_sentences()
    ids = {s: tuple(tokenizer.encode_ordinary(s + "\n")) for s, _ in sentences}
    mass: dict[tuple, float] = {}
    for s, p in sentences:
        for i in range(len(ids[s]) + 1):
            mass[ids[s][:i]] = mass.get(ids[s][:i], 0.0) + p
    return {s: [-math.log(mass[ids[s][: i + 1]] / mass[ids[s][:i]]) for i in range(len(ids[s]))]
            for s, _ in sentences}


def gap_breakdown(model: GPT, world: World, tokenizer: BPETokenizer, contexts: list[str] = ("",)) -> dict:
    """Split the model's exact excess loss per token over the floor into certain and uncertain tokens.

    Certain tokens (true surprisal 0: facts, the rest of a name, punctuation) have a floor of 0;
    uncertain ones (which template, which subject) carry the whole entropy. Returns nats/token
    (expected over the world's sentences, averaged over ``contexts``) and the share of tokens
    that are certain; "certain" + "uncertain" equals ``exact_cross_entropy`` minus the floor
    for the same contexts. Defined in chapter 8.
    """
    sentences = world.all_sentences()
    true = true_token_surprisal(world, tokenizer)
    tokens = sum(p * len(true[s]) for s, p in sentences)
    out = {"certain": 0.0, "uncertain": 0.0, "share_certain": 0.0}
    for context in contexts:
        ours = token_losses(model, tokenizer, [s for s, _ in sentences], context)
        for (s, p), q in zip(sentences, ours):
            for t_true, t_model in zip(true[s], q):
                key = "certain" if t_true < 1e-12 else "uncertain"
                out[key] += p * (t_model - t_true) / tokens / len(contexts)
    out["share_certain"] = sum(p * sum(t < 1e-12 for t in true[s]) for s, p in sentences) / tokens
    return out


def template_probabilities(model: GPT, world: World, tokenizer: BPETokenizer, context: str = "") -> list[float]:
    """The model's probability of each template as the next sentence: the sum of q(sentence) over
    its subjects (compare with ``TEMPLATES``' probabilities). Defined in chapter 8."""
    out = []
    for t, (_, _, kind) in enumerate(TEMPLATES):
        losses = sentence_losses(model, tokenizer, [world.render(t, s) for s in world.subjects(kind)], context)
        out.append(torch.exp(-losses.double()).sum().item())
    return out


def world_contexts(world: World, n: int = 3, seed: int = 100, n_sentences: int = 3) -> list[str]:
    """``n`` contexts of ``n_sentences`` random world sentences (each ending in a newline), to score the
    next sentence after, as in training (where a sentence usually follows others). Defined in chapter 8."""
    return ["\n".join(world.corpus(1, seed=seed + i, n_sentences=n_sentences)) + "\n" for i in range(n)]


def exact_cross_entropy(model: GPT, world: World, tokenizer: BPETokenizer, contexts: list[str] = ("",)) -> float:
    """The model's expected loss per token on the world's next sentence, computed exactly (nats/token).

    Enumerates every possible sentence s with its probability p(s) instead of sampling:
    sum_s p(s) * (-log q(s | context)) / sum_s p(s) * tokens(s), averaged over ``contexts``. By
    Gibbs' inequality it can never be below ``world.entropy_per_token``: no sampling noise, so the
    gap to the floor is exact for these contexts. Defined in chapter 8.
    """
    sentences = world.all_sentences()
    p = torch.tensor([q for _, q in sentences], dtype=torch.float64)
    n_tokens = torch.tensor([len(tokenizer.encode_ordinary(s + "\n")) for s, _ in sentences], dtype=torch.float64)
    nats = [(p * sentence_losses(model, tokenizer, [s for s, _ in sentences], c).double()).sum() for c in contexts]
    return (sum(nats) / len(nats) / (p * n_tokens).sum()).item()




@torch.no_grad()
def fact_accuracy(model: GPT, world: World, tokenizer: BPETokenizer, context: str = "") -> dict:
    """Greedy completion of every fact: "The capital of Kalo is" -> " Kaloville"? Share right, per template.

    For every template and every subject, the prompt is the sentence up to its fact (the part only
    memorisation can get right) and the model continues greedily. Defined in chapter 8.

    A greedy continuation equals the target exactly when, at every position of the target, the
    model's top token given the prompt and the target so far is the target's next token; so one
    forward pass over prompt + target ("teacher forcing") checks it, for all sentences of one
    length at once.
    """
    from .device import autocast_for

    bos = tokenizer.special_tokens["<|endoftext|>"]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    result = {}
    for t, (template, _, kind) in enumerate(TEMPLATES):
        by_length: dict[int, list[tuple[list[int], int]]] = {}  # total length -> (ids, prompt length)
        for subject in world.subjects(kind):
            sentence = world.render(t, subject)
            value = str(world.facts(kind, subject)[FACT_SLOTS[t]])
            cut = sentence.rindex(" " + value)
            prompt = [bos] + tokenizer.encode_ordinary(context + sentence[:cut])
            ids = prompt + tokenizer.encode_ordinary(sentence[cut:])
            by_length.setdefault(len(ids), []).append((ids, len(prompt)))
        right = 0
        for rows in by_length.values():
            x = torch.tensor([ids[:-1] for ids, _ in rows], device=device)
            with autocast_for(device):
                logits, _ = model(x)
            top = logits.float().argmax(dim=-1).tolist()
            right += sum(top[i][n - 1:] == ids[n:] for i, (ids, n) in enumerate(rows))
        result[template] = right / len(world.subjects(kind))
    model.train(was_training)
    return result


@torch.no_grad()
def per_position_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean loss at each position over a batch, ignoring -100 targets (NaN where none). Defined in chapter 8."""
    was_training = model.training
    model.eval()
    logits, _ = model(x)
    model.train(was_training)
    nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=-100, reduction="none")
    counts = (y != -100).sum(dim=0)
    return torch.where(counts > 0, nll.sum(dim=0) / counts.clamp(min=1), torch.tensor(float("nan")))


# --- chapter 8's default run (also timed by benchmarks/pretraining.py) -------------------------

SMALL_CONFIG = GPTConfig(block_size=128, vocab_size=WORLD_VOCAB_SIZE, n_layer=2, n_head=4, n_embd=128)
SMALL_TRAIN = TrainConfig(max_steps=300, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=50, eval_batches=8)
SMALL_SENTENCES_PER_ROW = 6  # at most 6 * 17 = 102 tokens, within SMALL_CONFIG.block_size

# --- the reference model ---------------------------------------------------------------------

REFERENCE_CONFIG = GPTConfig(block_size=256, vocab_size=WORLD_VOCAB_SIZE, n_layer=4, n_head=4, n_embd=128)
REFERENCE_SENTENCES_PER_ROW = 14  # about 119 tokens a row on average, at most 238
REFERENCE_TRAIN = TrainConfig(max_steps=800, lr=3e-3, min_lr=3e-4, warmup_steps=40, eval_every=100, eval_batches=16)
REFERENCE_BATCH_SIZE = 32
REFERENCE_SEED = 0
REFERENCE_FILE = "reference_model.pt"
REFERENCE_DATA = dict(world_seed=0, batch_size=REFERENCE_BATCH_SIZE, data_seed=REFERENCE_SEED,
                      sentences_per_row=REFERENCE_SENTENCES_PER_ROW)


def _data_dir() -> Path:
    return Path(__file__).resolve().parent / "data"


def reference_batches() -> WorldBatches:
    return WorldBatches(World(REFERENCE_DATA["world_seed"]), world_tokenizer(), REFERENCE_DATA["sentences_per_row"],
                        REFERENCE_DATA["batch_size"], seed=REFERENCE_DATA["data_seed"])


def train_reference(progress: bool = True) -> tuple[GPT, dict]:
    """Train the reference model from scratch on the CPU, deterministically. Defined in chapter 8."""
    torch.manual_seed(REFERENCE_SEED)
    model = GPT(REFERENCE_CONFIG)
    data = reference_batches()
    trainer = Trainer(model, REFERENCE_TRAIN, data.get_batch, device="cpu")
    start = time.perf_counter()
    history = trainer.fit(progress=progress)
    info = {"eval_loss": history.eval_loss[-1], "eval_steps": history.eval_steps, "eval_losses": history.eval_loss,
            "train_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
            "floor": World(REFERENCE_DATA["world_seed"]).entropy_per_token(world_tokenizer().encode_ordinary),
            "model_config": asdict(REFERENCE_CONFIG), "train_config": asdict(REFERENCE_TRAIN), "data": REFERENCE_DATA}
    return model, info


def evaluate_reference(model: GPT) -> float:
    """The reference run's validation loss of ``model``, on the device the model is on. Defined in chapter 8."""
    data = reference_batches()
    trainer = Trainer(model, REFERENCE_TRAIN, data.get_batch, device=next(model.parameters()).device)
    return trainer.evaluate()


@lru_cache(maxsize=4)
def _stored_state(filename: str):
    path = resources.files("utils").joinpath("data", filename)
    with resources.as_file(path) as p:
        return torch.load(p, map_location="cpu", weights_only=False)


def load_checkpoint(filename: str, device=None) -> tuple[GPT, dict]:
    """A fresh copy of a model stored in ``utils/data`` as {"model": state dict, "info": record with
    "model_config"}, and its record."""
    state = _stored_state(filename)
    model = GPT(GPTConfig(**state["info"]["model_config"]))
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    return model.to(device or "cpu").eval(), dict(state["info"])


def load_reference(device=None) -> tuple[GPT, dict]:
    """The stored reference model (a fresh copy each call) and its record (eval loss, floor, configs).

    Trained by ``python -m utils.pretraining``; chapters 9 to 13 start from it. Defined in chapter 8.
    """
    return load_checkpoint(REFERENCE_FILE, device)


def save_reference(model: GPT, info: dict, path: Path) -> None:
    # fp32 weights; torch.save stores the tied lm_head/wte tensor once
    torch.save({"model": model.state_dict(), "info": info}, path)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train (or check) the course's reference model on the tiny world.")
    parser.add_argument("--check", action="store_true", help="only load the stored model and re-evaluate it")
    parser.add_argument("--out", type=Path, default=_data_dir() / REFERENCE_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.check:
        model, info = load_reference()
        loss = evaluate_reference(model)
        print(f"stored eval loss {info['eval_loss']:.6f}, re-evaluated {loss:.6f}, floor {info['floor']:.6f}")
        return 0 if abs(loss - info["eval_loss"]) < 1e-4 else 1
    tok_path = _data_dir() / WORLD_TOKENIZER_FILE
    if not tok_path.exists():
        train_world_tokenizer().save(tok_path)
        world_tokenizer.cache_clear()
    model, info = train_reference()
    save_reference(model, info, args.out)
    print(json.dumps({k: info[k] for k in ("eval_loss", "floor", "train_seconds")}))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
