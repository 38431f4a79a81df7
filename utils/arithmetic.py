"""Multi-digit addition for a character-level GPT: with and without written steps (chapters 11 and 13).

    tok = ArithmeticTokenizer()
    data = AdditionBatches(steps=True)              # rows of "\\n47+85=7+5+0=12;4+8+1=13;so 132\\n..."
    model, info = load_arithmetic_model(steps=True) # stored checkpoints, trained by `python -m utils.arithmetic`
    accuracy_by_digits(model, steps=True)           # {1: 1.0, 2: 0.99, ...}: greedy, exact match
    load_arithmetic_model(fmt="reversed")           # the control of chapter 13: "47+85=" -> "231"

Three formats of the completion (``FORMATS``; ``fmt=`` selects one, ``steps=True``/``False`` are the
first two): ``"plain"`` the sum ("132"), ``"steps"`` every column right to left, then the sum
("7+5+0=12;4+8+1=13;so 132"), ``"reversed"`` the sum written lowest digit first ("231"), as in Lee et
al. (2024), "Teaching Arithmetic to Small Transformers" (ICLR). The reversed format is chapter 13's
control: the steps format computes the columns lowest digit first too, so comparing the three
separates what the order of the digits explains from what writing the steps explains.

Each training row is ``block_size + 1`` characters of examples written back to back, each ended by a
newline (the last one cut off at the row's end), from ``utils.tiny_world.addition_example`` with 1 to
``MAX_DIGITS`` digits. Only the
completion (the steps, the sum and the newline that ends it) carries loss: the question is random, so
no model can predict it. The models of chapter 13 differ only in the format of the completions. They
have the same architecture, train for the same number of steps on rows of the same length, and so
spend the same training compute (the FLOPs of a step depend only on the model and the row length);
the models without steps see more (shorter) examples per row. The plain and reversed models see
exactly the same sums in the same rows (a reversed sum has as many characters as the sum).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .model import GPT, GPTConfig
from .tiny_world import addition_completion, addition_example, parse_answer
from .train import TrainConfig, Trainer
from .validation import check_bool, check_choice

__all__ = ["ARITH_EARLY_STEP", "ArithmeticTokenizer", "AdditionBatches", "ARITH_CONFIG", "ARITH_TRAIN", "MAX_DIGITS",
           "FORMATS", "format_completion", "parse_completion", "held_out_sums",
           "complete", "accuracy_by_digits", "self_consistency", "train_arithmetic_model",
           "load_arithmetic_model", "majority_vote", "sample_answers", "completion_token_stats"]

MAX_DIGITS = 5
ARITH_CONFIG = GPTConfig(block_size=128, vocab_size=17, n_layer=4, n_head=4, n_embd=128, position="rope")
ARITH_TRAIN = TrainConfig(max_steps=1500, lr=2e-3, min_lr=2e-4, warmup_steps=100, weight_decay=0.1, grad_clip=1.0,
                          eval_every=500, eval_batches=4)
ARITH_BATCH_SIZE = 32
ARITH_FILES = {True: "arithmetic_steps.pt", False: "arithmetic_plain.pt", "early": "arithmetic_steps_early.pt",
               "reversed": "arithmetic_reversed.pt"}
#: The formats of a completion of "a+b=" (see the module docstring); chapter 13 compares all three.
FORMATS = ("plain", "steps", "reversed")
#: The steps model part-way through training, which still makes mistakes (chapter 13's self-consistency).
ARITH_EARLY_STEP = 500


def _resolve_format(steps, fmt) -> str:
    """The format name from the old ``steps`` flag and/or the newer ``fmt`` name (they must agree)."""
    if fmt is None:
        if steps is None:
            raise ValueError("pass steps=True/False or fmt='plain', 'steps' or 'reversed'")
        return "steps" if check_bool(steps, "steps") else "plain"
    check_choice(fmt, "fmt", FORMATS)
    if steps is not None and ("steps" if check_bool(steps, "steps") else "plain") != fmt:
        raise ValueError(f"steps={steps!r} contradicts fmt={fmt!r}; pass only fmt")
    return fmt


def format_completion(a: int, b: int, fmt: str) -> str:
    """The completion of "a+b=" in format ``fmt`` (one of ``FORMATS``), without the closing newline.

    Example: 47+85 -> "132" (plain), "7+5+0=12;4+8+1=13;so 132" (steps), "231" (reversed).
    """
    check_choice(fmt, "fmt", FORMATS)
    text = addition_completion(a, b, fmt == "steps")  # checks a and b
    return text[::-1] if fmt == "reversed" else text


def parse_completion(completion: str, fmt: str) -> int | None:
    """The sum a completion in format ``fmt`` states (None if it ends in no number): the number it
    ends with (after "so " with steps), read lowest digit first for ``"reversed"``."""
    check_choice(fmt, "fmt", FORMATS)
    if not isinstance(completion, str):
        raise ValueError(f"completion must be a string, got {type(completion).__name__}")
    if fmt != "reversed":
        return parse_answer(completion)
    match = re.search(r"(\d+)\s*$", completion)
    return int(match.group(1)[::-1]) if match else None


class ArithmeticTokenizer:
    """One token per character of "\\n0123456789+=;so " (17 tokens). "\\n" ends every example."""

    CHARS = "\n0123456789+=;so "

    def __init__(self):
        self.stoi = {c: i for i, c in enumerate(self.CHARS)}
        self.newline = self.stoi["\n"]

    @property
    def vocab_size(self) -> int:
        return len(self.CHARS)

    def encode(self, text: str) -> list[int]:
        bad = sorted({c for c in text if c not in self.stoi})
        if bad:
            raise ValueError(f"text has characters outside {self.CHARS!r}: {bad}")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self.CHARS)]
        if bad:
            raise ValueError(f"token ids must be in [0, {len(self.CHARS)}), got {bad[:5]}")
        return "".join(self.CHARS[i] for i in ids)


def _check_digits(n_digits) -> None:
    if not isinstance(n_digits, int) or not 1 <= n_digits <= MAX_DIGITS:
        raise ValueError(f"n_digits must be an integer in [1, {MAX_DIGITS}], got {n_digits!r}")


class AdditionBatches:
    """(x, y) batches of packed addition examples; y is -100 on the questions. ``get_batch(split, step)``
    is deterministic, so two runs (and the models) see reproducible data. ``steps=True``/``False`` or
    ``fmt`` (one of ``FORMATS``) chooses the format of the completions."""

    SEEDS = {"train": 31, "val": 32}

    def __init__(self, steps: bool | None = None, batch_size: int = ARITH_BATCH_SIZE,
                 block_size: int = ARITH_CONFIG.block_size, max_digits: int = MAX_DIGITS, fmt: str | None = None):
        _check_digits(max_digits)
        self.fmt = _resolve_format(steps, fmt)
        self.steps = self.fmt == "steps"
        self.batch_size, self.block_size, self.max_digits = batch_size, block_size, max_digits
        self.tok = ArithmeticTokenizer()

    def row(self, rng: random.Random) -> tuple[list[int], list[int]]:
        """One row: a newline, then examples back to back; the last one is cut at ``block_size + 1`` tokens
        (as when a long text stream is cut into rows), so no position is wasted on padding."""
        ids, carries = [self.tok.newline], [False]
        while len(ids) < self.block_size + 1:
            prompt, completion = addition_example(rng, rng.randint(1, self.max_digits), self.steps)
            if self.fmt == "reversed":  # the same sums as the plain format, the answer's digits reversed
                completion = completion[::-1]
            p, c = self.tok.encode(prompt), self.tok.encode(completion + "\n")
            ids += p + c
            carries += [False] * len(p) + [True] * len(c)
        ids, carries = ids[:self.block_size + 1], carries[:self.block_size + 1]
        x = ids[:-1]
        y = [t if keep else -100 for t, keep in zip(ids[1:], carries[1:])]
        return x, y

    def get_batch(self, split: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.SEEDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        rng = random.Random(self.SEEDS[split] * 1_000_003 + step)
        rows = [self.row(rng) for _ in range(self.batch_size)]
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def held_out_sums(n_digits: int, n: int = 200, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` pairs (a, b) of ``n_digits``-digit numbers (the same pairs for both models)."""
    _check_digits(n_digits)
    rng = random.Random(seed * 100 + n_digits)
    prompts = [addition_example(rng, n_digits, False)[0] for _ in range(n)]
    return [tuple(int(v) for v in p[:-1].split("+")) for p in prompts]


def _max_completion(n_digits: int, steps: bool) -> int:
    # steps: n columns of "x+y+c=tt;" (at most 9 chars) + "so " + n+1 digits; plus the newline
    return (9 * n_digits + 3 if steps else 0) + n_digits + 2


@torch.no_grad()
def complete(model: GPT, pairs: list[tuple[int, int]], steps: bool | None = None, greedy: bool = True,
             temperature: float = 1.0, samples: int = 1, generator: torch.Generator | None = None,
             fmt: str | None = None) -> list[list[str]]:
    """The model's completions of "a+b=" for each pair, cut at the first newline: ``samples`` per pair.

    All pairs must have the same number of digits (so all prompts have the same length and run as one
    batch). Returns one list of ``samples`` strings per pair. ``steps`` or ``fmt`` names the format the
    model was trained on (it sets how many characters to generate).
    """
    steps = _resolve_format(steps, fmt) == "steps"
    if not pairs:
        raise ValueError("pairs must not be empty")
    tok = ArithmeticTokenizer()
    prompts = [tok.encode(f"\n{a}+{b}=") for a, b in pairs]
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("all pairs must have the same number of digits (one batch needs one prompt length)")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    n_digits = len(str(pairs[0][0]))
    device = next(model.parameters()).device
    idx = torch.tensor(prompts, device=device).repeat_interleave(samples, dim=0)
    out = model.generate(idx, _max_completion(n_digits, steps), temperature=temperature, greedy=greedy,
                         generator=generator)
    texts = [tok.decode(row[len(prompts[0]):].tolist()).split("\n")[0] for row in out]
    return [texts[i * samples:(i + 1) * samples] for i in range(len(pairs))]


def accuracy_by_digits(model: GPT, steps: bool | None = None, digits=range(1, MAX_DIGITS + 1), n: int = 200,
                       fmt: str | None = None) -> dict[int, float]:
    """Greedy exact-match accuracy of the final sum, per number of digits, on ``held_out_sums``."""
    fmt = _resolve_format(steps, fmt)
    result = {}
    for d in digits:
        pairs = held_out_sums(d, n)
        answers = [parse_completion(c[0], fmt) for c in complete(model, pairs, fmt=fmt)]
        result[d] = sum(ans == a + b for ans, (a, b) in zip(answers, pairs)) / len(pairs)
    return result


def majority_vote(answers: list) -> int | None:
    """The most common answer that is not None (ties: the one seen first); None if there is none."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    best = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == best)


def sample_answers(model: GPT, pairs: list[tuple[int, int]], steps: bool | None = None, k: int = 1,
                   temperature: float = 1.0, seed: int = 0, fmt: str | None = None) -> list[list[int | None]]:
    """``k`` sampled completions per question at ``temperature``, each parsed to its final answer."""
    fmt = _resolve_format(steps, fmt)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample different paths, got {temperature}")
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    samples = complete(model, pairs, fmt=fmt, greedy=False, temperature=temperature, samples=k, generator=g)
    return [[parse_completion(s, fmt) for s in row] for row in samples]


def self_consistency(model: GPT, pairs: list[tuple[int, int]], steps: bool | None = None, ks=(1, 3, 5, 9, 15),
                     temperature: float = 1.0, seed: int = 0, answers: list[list] | None = None,
                     fmt: str | None = None) -> dict[int, float]:
    """Wang et al. (2022): sample max(ks) completions per question at ``temperature``; the accuracy of the
    majority vote over the first k samples, for each k. ``answers`` reuses ``sample_answers``' output."""
    fmt = _resolve_format(steps, fmt)
    if answers is None:
        answers = sample_answers(model, pairs, k=max(ks), temperature=temperature, seed=seed, fmt=fmt)
    if len(answers) != len(pairs) or any(len(row) < max(ks) for row in answers):
        raise ValueError(f"answers must hold at least {max(ks)} answers for each of the {len(pairs)} questions")
    return {k: sum(majority_vote(row[:k]) == a + b for row, (a, b) in zip(answers, pairs)) / len(pairs) for k in ks}


@torch.no_grad()
def completion_token_stats(model: GPT, pairs: list[tuple[int, int]], steps: bool | None = None,
                           fmt: str | None = None) -> dict:
    """Teacher-forced on the correct completion (all its tokens: steps, answer and the closing newline):
    the mean loss per token, the fraction of tokens the model ranks first, the mean number of tokens,
    and the fraction of completions whose every token it ranks first; plus, generating freely and
    greedily, the fraction of final answers that are right (chapter 11's emergence curve)."""
    fmt = _resolve_format(steps, fmt)
    tok = ArithmeticTokenizer()
    device = next(model.parameters()).device
    losses, hits, whole, lengths = [], [], [], []
    for a, b in pairs:
        p, c = tok.encode(f"\n{a}+{b}="), tok.encode(format_completion(a, b, fmt) + "\n")
        ids = torch.tensor([p + c], device=device)
        logits = model(ids[:, :-1])[0][0].float()[len(p) - 1:]
        targets = ids[0, len(p):]
        losses.append(F.cross_entropy(logits, targets, reduction="none"))
        ok = logits.argmax(-1) == targets
        hits.append(ok)
        whole.append(bool(ok.all()))
        lengths.append(len(c))
    answers = [parse_completion(c[0], fmt) for c in complete(model, pairs, fmt=fmt)]
    return {"loss": torch.cat(losses).mean().item(), "token_accuracy": torch.cat(hits).float().mean().item(),
            "tokens": sum(lengths) / len(lengths), "teacher_forced_exact": sum(whole) / len(whole),
            "greedy_exact": sum(ans == a + b for ans, (a, b) in zip(answers, pairs)) / len(pairs)}


def train_arithmetic_model(steps: bool | None = None, config: GPTConfig = ARITH_CONFIG, train: TrainConfig = ARITH_TRAIN,
                           seed: int = 0, device: str = "cpu", progress: bool = True,
                           record_every: int = 0, record_digits: int = MAX_DIGITS, record_n: int = 100,
                           snapshot_at: int | None = None, stop_at: int | None = None,
                           fmt: str | None = None) -> tuple[GPT, dict]:
    """Train one model of chapter 13 from scratch (with or without written steps, or with ``fmt``).

    With ``record_every`` > 0, every that many steps the statistics of ``completion_token_stats``
    on ``record_n`` sums of ``record_digits`` digits are recorded in
    ``info["curve"]``: chapter 11 plots them against training compute. ``snapshot_at`` keeps a copy
    of the weights at that step in ``info["snapshot"]`` (a multiple of ``record_every``);
    ``stop_at`` ends training there, with the learning-rate schedule of the full run, so its
    model is exactly the full run's model at that step.
    """
    fmt = _resolve_format(steps, fmt)
    steps = fmt == "steps"
    torch.manual_seed(seed)
    model = GPT(config)
    data = AdditionBatches(fmt=fmt, block_size=config.block_size)
    trainer = Trainer(model, train, data.get_batch, device=device)
    flops_per_step = 6 * model.num_params(non_embedding=False) * data.batch_size * config.block_size
    pairs = held_out_sums(record_digits, record_n, seed=1)
    curve = []
    start = time.perf_counter()
    chunk = record_every or train.max_steps
    snapshot = None
    while trainer.step < (stop_at or train.max_steps):
        history = trainer.fit(steps=min(chunk, (stop_at or train.max_steps) - trainer.step), progress=progress)
        if trainer.step == snapshot_at:
            snapshot = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if record_every:
            model.eval()
            curve.append({"step": trainer.step, "flops": flops_per_step * trainer.step,
                          **completion_token_stats(model, pairs, fmt=fmt)})
            model.train()
    model = model.cpu().eval()
    info = {"steps": steps, "format": fmt, "seed": seed, "trained_steps": trainer.step,
            "eval_loss": history.eval_loss[-1] if history.eval_loss else None,
            "eval_steps": history.eval_steps,
            "eval_losses": history.eval_loss, "train_seconds": round(time.perf_counter() - start, 1),
            "torch": torch.__version__, "model_config": asdict(config), "train_config": asdict(train),
            "batch_size": data.batch_size, "tokens_per_step": data.batch_size * config.block_size,
            "flops_per_step": flops_per_step, "curve": curve, "curve_digits": record_digits}
    if snapshot is not None:
        info["snapshot"] = snapshot
    return model, info


def load_arithmetic_model(steps: bool | None = None, device=None, early: bool = False,
                          fmt: str | None = None) -> tuple[GPT, dict]:
    """The stored model trained with (``steps=True``) or without written steps, and its record;
    ``fmt="reversed"``: the one trained on reversed answers (chapter 13's control).
    ``early=True`` (steps only): the steps model after ``ARITH_EARLY_STEP`` of its steps."""
    from .pretraining import load_checkpoint

    fmt = _resolve_format(steps, fmt)
    if early and fmt != "steps":
        raise ValueError("only the steps model has an early checkpoint: pass steps=True with early=True")
    key = "early" if early else {"steps": True, "plain": False, "reversed": "reversed"}[fmt]
    return load_checkpoint(ARITH_FILES[key], device)


def _save(model: GPT, info: dict, path: Path) -> None:
    torch.save({"model": model.state_dict(), "info": info}, path)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)", file=sys.stderr)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the arithmetic models of chapter 13.")
    parser.add_argument("--max-steps", type=int, default=ARITH_TRAIN.max_steps)
    parser.add_argument("--only", choices=["steps", "plain", "reversed", "early"],
                        help="train one model ('early': the steps model up to ARITH_EARLY_STEP only)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--seed", type=int, default=0,
                        help="the initialisation's seed (the stored models use 0; the data do not depend on it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train = replace(ARITH_TRAIN, max_steps=args.max_steps, eval_every=max(1, args.max_steps // 4))
    every = max(1, args.max_steps // 30)
    for kind in ("steps", "plain", "reversed"):
        if args.only and args.only != kind and not (args.only == "early" and kind == "steps"):
            continue
        steps = kind == "steps"
        stop = ARITH_EARLY_STEP if args.only == "early" else None
        model, info = train_arithmetic_model(fmt=kind, train=train, seed=args.seed, record_every=every, stop_at=stop,
                                             snapshot_at=ARITH_EARLY_STEP if steps else None)
        snapshot = info.pop("snapshot", None)
        if snapshot is not None:
            early = GPT(ARITH_CONFIG)
            early.load_state_dict(snapshot)
            early_info = {**info, "trained_steps": ARITH_EARLY_STEP,
                          "curve": [c for c in info["curve"] if c["step"] <= ARITH_EARLY_STEP]}
            early_info["accuracy"] = accuracy_by_digits(early.eval(), True)
            _save(early, early_info, args.out_dir / ARITH_FILES["early"])
        if stop is None:
            info["accuracy"] = accuracy_by_digits(model, fmt=kind)
            _save(model, info, args.out_dir / ARITH_FILES[kind if kind == "reversed" else steps])
            print(json.dumps({k: info[k] for k in ("steps", "eval_loss", "train_seconds", "accuracy")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
