"""In-context learning on the tiny world: a model that can use examples in its prompt (chapter 12).

The reference model of chapter 8 saw only independent world sentences, so nothing in its
training rewarded looking back at earlier lines: given "Zankolo -> Miyasville\\nVengri ->" it
answers nothing useful at any number of examples. Real pretraining text is full of lists,
tables and repeated names. ``ICLBatches`` mixes three kinds of rows:

    world text (as in chapter 8)
    few-shot lists   "Zankolo -> Miyasville\\nRiswiltor -> Beltenville\\nVengri -> Rafenrisville\\n"
                     (one relation per list; countries and capitals of ``World(seed=0)``)
    repeat rows      a random token sequence, then the same sequence again (loss only on the repeat)

``python -m utils.icl`` continues training the reference model on this mixture and writes
``utils/data/icl_model.pt`` (200 steps, about a minute on 2 CPU cores); ``load_icl_model()`` loads
it. Those 200 steps teach the few-shot format but do not grow induction heads;
``train_induction_model`` trains a small model on repeated sequences alone, where they appear
within a few hundred steps. ``few_shot_accuracy`` scores a model
on ``World.few_shot_prompt`` and ``induction_scores`` measures, per head, how much attention goes
from a repeated token to the token that followed its first occurrence (Olsson et al., 2022).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from .bpe import BPETokenizer
from .model import GPT, GPTConfig, apply_rope, rope_cos_sin
from .pretraining import load_checkpoint, load_reference, reference_batches, world_tokenizer
from .tiny_world import RELATIONS, World
from .train import TrainConfig, Trainer

__all__ = ["ICLBatches", "ICL_TRAIN", "train_icl_model", "load_icl_model", "few_shot_accuracy",
           "attention_patterns", "induction_scores", "task_posterior", "answer_probabilities", "relation_lines",
           "finetune_on_relation", "zero_shot_accuracy", "FINETUNE_TRAIN", "INDUCTION_CONFIG", "INDUCTION_TRAIN",
           "INDUCTION_FILE", "load_induction_model",
           "repeated_sequences", "train_induction_model", "UNPRACTISED", "held_out_few_shot_accuracy"]

ICL_TRAIN = TrainConfig(max_steps=200, lr=1e-3, min_lr=1e-4, warmup_steps=10, eval_every=50, eval_batches=2)
ICL_FILE = "icl_model.pt"
INDUCTION_FILE = "induction_model.pt"  # chapter 12's copying model and its training curve
ICL_MIX = {"world": 12, "few_shot": 12, "repeat": 8}  # rows of each kind in a batch of 32


class ICLBatches:
    """Batches of world rows, few-shot lists (1 to ``max_shots`` examples) and repeat rows. Defined in chapter 12."""

    SEEDS = {"train": 21, "val": 22}

    def __init__(self, world: World, tokenizer: BPETokenizer, mix: dict = ICL_MIX, max_shots: int = 8,
                 block_size: int = 256):
        if set(mix) != {"world", "few_shot", "repeat"} or min(mix.values()) < 0 or sum(mix.values()) < 1:
            raise ValueError(f"mix must give a count >= 0 for 'world', 'few_shot' and 'repeat', got {mix}")
        self.world, self.tokenizer, self.mix, self.max_shots = world, tokenizer, mix, max_shots
        self.eot = tokenizer.special_tokens["<|endoftext|>"]
        self.first_special = min(tokenizer.special_tokens.values())  # the world tokenizer puts them last
        self.world_rows = reference_batches()
        self.block_size = block_size

    def few_shot_row(self, rng: random.Random) -> list[int]:
        relation = rng.choice(sorted(RELATIONS))
        prompt, answer = self.world.few_shot_prompt(rng, relation, rng.randint(1, self.max_shots))
        return [self.eot] + self.tokenizer.encode_ordinary(prompt + answer + "\n")

    def repeat_row(self, rng: random.Random) -> tuple[list[int], list[int]]:
        """Random tokens, then the same tokens again: only a look-back to the first copy predicts the second
        (its first token excepted: nothing announces where the repeat starts)."""
        n = rng.randint(4, 24)
        seq = [rng.randrange(0, self.first_special) for _ in range(n)]  # ordinary tokens only
        ids = [self.eot] + seq + seq
        targets = ids[1:]
        return ids[:-1], [-100] * (n + 1) + targets[n + 1:]

    def get_batch(self, split: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.SEEDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        rng = random.Random(self.SEEDS[split] * 7_919_993 + step)
        rows: list[tuple[list[int], list[int]]] = []
        if self.mix["world"]:
            x, y = self.world_rows.get_batch(split, step)
            rows += [(xr.tolist(), yr.tolist()) for xr, yr in zip(x[: self.mix["world"]], y[: self.mix["world"]])]
        for _ in range(self.mix["few_shot"]):
            ids = self.few_shot_row(rng)
            rows.append((ids[:-1], ids[1:]))
        rows += [self.repeat_row(rng) for _ in range(self.mix["repeat"])]
        width = max(len(x) for x, _ in rows)
        X = torch.full((len(rows), width), self.eot, dtype=torch.long)
        Y = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            X[i, : len(x)], Y[i, : len(y)] = torch.tensor(x), torch.tensor(y)
        return X, Y


def train_icl_model(progress: bool = True) -> tuple[GPT, dict]:
    """Continue training the reference model on ``ICLBatches`` (CPU, deterministic). Defined in chapter 12."""
    torch.manual_seed(0)
    model, reference_info = load_reference("cpu")
    world, tok = World(seed=0), world_tokenizer()
    start = time.perf_counter()
    history = Trainer(model, ICL_TRAIN, ICLBatches(world, tok).get_batch, device="cpu").fit(progress=progress)
    info = {"eval_loss": history.eval_loss[-1], "train_seconds": round(time.perf_counter() - start, 1),
            "model_config": reference_info["model_config"], "train_config": asdict(ICL_TRAIN), "mix": ICL_MIX,
            "torch": torch.__version__}
    return model.eval(), info


def load_icl_model(device=None) -> tuple[GPT, dict]:
    """The stored in-context-learning model (a fresh copy) and its record. Defined in chapter 12."""
    return load_checkpoint(ICL_FILE, device)


def _greedy_answers(model: GPT, tokenizer: BPETokenizer, prompt: str, answer: str) -> bool:
    """Whether the model, given "<|endoftext|>" + prompt, greedily writes exactly ``answer`` next."""
    eot = tokenizer.special_tokens["<|endoftext|>"]
    ids = torch.tensor([[eot] + tokenizer.encode_ordinary(prompt)], device=next(model.parameters()).device)
    target = tokenizer.encode_ordinary(answer)
    return model.generate(ids, len(target), greedy=True)[0, ids.shape[1]:].tolist() == target


@torch.no_grad()
def few_shot_accuracy(model: GPT, world: World, tokenizer: BPETokenizer, relation: str, n_shots: int, n: int = 40,
                      wrong_labels: bool = False, seed: int = 10**6, separator: str = " ->") -> float:
    """Share of ``n`` few-shot prompts whose greedy continuation is exactly the right value.

    ``separator`` replaces " ->" in the prompt (to test sensitivity to the format). Defined in chapter 12.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    right = 0
    for i in range(n):
        prompt, answer = world.few_shot_prompt(random.Random(seed + i), relation, n_shots, wrong_labels=wrong_labels)
        right += _greedy_answers(model, tokenizer, prompt.replace(" ->", separator), answer)
    return right / n


@torch.no_grad()
def attention_patterns(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Attention weights of every layer and head for ``idx`` (B, T): a tensor (n_layer, B, n_head, T, T).

    Recomputed from each attention layer's input with the same projections, positions and causal
    mask as the model (which itself uses a fused kernel that does not return the weights).
    """
    weights = []

    def hook(module, args):
        x, positions = args[0], args[1]
        B, T, C = x.shape
        hs = C // module.n_head
        q, k, _ = module.c_attn(x).split(module.n_embd, dim=2)
        q = q.view(B, T, module.n_head, hs).transpose(1, 2)
        k = k.view(B, T, module.n_head, hs).transpose(1, 2)
        if module.config.position == "rope":
            cos, sin = rope_cos_sin(positions, hs, module.config.rope_base, module.config.rope_scale)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = q @ k.transpose(-2, -1) / hs ** 0.5
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        weights.append(F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1))

    handles = [block.attn.register_forward_pre_hook(hook) for block in model.transformer.h]
    try:
        model.eval()(idx)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(weights)


@torch.no_grad()
def induction_scores(model: GPT, length: int = 30, batch: int = 8, token_range: tuple[int, int] | None = None,
                     seed: int = 0) -> torch.Tensor:
    """Per-head induction score (n_layer, n_head): on random token sequences repeated twice, the mean
    attention from each token of the second copy to the token *after* its first occurrence.

    An induction head (Olsson et al., 2022) looks back for the previous occurrence of the current
    token and attends to what came next, so that it can predict it; its score approaches 1.
    """
    low, high = token_range or (0, model.config.vocab_size)  # pass (0, first special id) to leave those out
    if not 0 <= low < high <= model.config.vocab_size:
        raise ValueError(f"token_range must lie within [0, {model.config.vocab_size}], got {token_range}")
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(low, high, (batch, length), generator=g)
    device = next(model.parameters()).device
    idx = torch.cat([seq, seq], dim=1).to(device)
    att = attention_patterns(model, idx)  # (L, B, H, 2n, 2n)
    query = torch.arange(length, 2 * length - 1, device=device)  # second copy, all but its last token
    key = query - length + 1  # the token after the first occurrence
    return att[:, :, :, query, key].mean(dim=(1, 3))


# -- why it works: task inference ------------------------------------------------------------------
def task_posterior(world: World, examples: list[tuple[str, str]], noise: float = 0.1) -> dict[str, float]:
    """An ideal Bayesian reader's posterior over the world's relations after seeing ``examples``.

    Prior: uniform over ``RELATIONS``. Likelihood of one example (subject, value) under relation r:
    0 if the subject is of the wrong kind; otherwise 1 - ``noise`` if value is the subject's true
    r-value, and ``noise`` / (number of other r-values) if not (a labeller who sometimes errs).
    This is the picture of Xie et al. (2022): the prompt is evidence about which task is meant.
    """
    if not 0 < noise < 1:
        raise ValueError(f"noise must be in (0, 1), got {noise}")
    log_post = {}
    for relation, (kind, attribute) in RELATIONS.items():
        values = {world.facts(kind, s)[attribute] for s in world.subjects(kind)}
        logp = 0.0
        for subject, value in examples:
            if subject not in world.subjects(kind):
                logp = float("-inf")
                break
            right = world.facts(kind, subject)[attribute] == value
            logp += math.log(1 - noise) if right else math.log(noise / max(1, len(values) - 1))
        log_post[relation] = logp
    top = max(log_post.values())
    if top == float("-inf"):
        raise ValueError("no relation fits the subjects of these examples")
    weights = {r: math.exp(v - top) for r, v in log_post.items()}
    total = sum(weights.values())
    return {r: w / total for r, w in weights.items()}


@torch.no_grad()
def answer_probabilities(model: GPT, world: World, tokenizer: BPETokenizer, relation: str, n_shots: int,
                         n: int = 20, seed: int = 10**6, wrong_labels: bool = False) -> dict[str, float]:
    """The model's own "posterior" over tasks: on ``n`` few-shot prompts of ``relation``, the mean
    probability, normalised over the relations whose subjects are of the same kind, that the model
    gives to each relation's answer for the query (e.g. its capital vs its export)."""
    kind = RELATIONS[relation][0]
    rivals = [r for r, (k, _) in RELATIONS.items() if k == kind]
    eot = tokenizer.special_tokens["<|endoftext|>"]
    device = next(model.parameters()).device
    totals = dict.fromkeys(rivals, 0.0)
    for i in range(n):
        prompt, _ = world.few_shot_prompt(random.Random(seed + i), relation, n_shots, wrong_labels=wrong_labels)
        query = prompt.rsplit("\n", 1)[-1][: -len(" ->")]
        context = [eot] + tokenizer.encode_ordinary(prompt)
        logps = {}
        for r in rivals:
            answer = tokenizer.encode_ordinary(" " + world.facts(kind, query)[RELATIONS[r][1]])
            ids = torch.tensor([context + answer], device=device)
            logits = model(ids[:, :-1])[0][0].float()
            logp = F.log_softmax(logits[len(context) - 1:], dim=-1)
            logps[r] = logp.gather(1, ids[0, len(context):, None]).sum().item()
        top = max(logps.values())
        z = sum(math.exp(v - top) for v in logps.values())
        for r in rivals:
            totals[r] += math.exp(logps[r] - top) / z / n
    return totals


# -- ICL vs fine-tuning -----------------------------------------------------------------------------
#: A relation the ICL model never practised in few-shot lists (its facts are in the world's text).
UNPRACTISED = {"age": ("person", "age")}


def _kind_attribute(relation: str) -> tuple[str, str]:
    if relation in RELATIONS:
        return RELATIONS[relation]
    if relation in UNPRACTISED:
        return UNPRACTISED[relation]
    raise ValueError(f"relation must be one of {sorted(RELATIONS) + sorted(UNPRACTISED)}, got {relation!r}")


def relation_lines(world: World, tokenizer: BPETokenizer, relation: str, subjects: list[str]) -> list[list[int]]:
    """One row per subject: "<|endoftext|>subject -> value\n" (the zero-shot format of a relation)."""
    kind, attribute = _kind_attribute(relation)
    eot = tokenizer.special_tokens["<|endoftext|>"]
    return [[eot] + tokenizer.encode_ordinary(f"{s} -> {world.facts(kind, s)[attribute]}\n") for s in subjects]


FINETUNE_TRAIN = TrainConfig(max_steps=60, lr=1e-3, min_lr=1e-4, warmup_steps=5, eval_every=60, eval_batches=1)


def finetune_on_relation(model: GPT, world: World, tokenizer: BPETokenizer, relation: str, subjects: list[str],
                         config: TrainConfig = FINETUNE_TRAIN, batch_size: int = 8, seed: int = 0) -> dict:
    """Fine-tune ``model`` in place on zero-shot lines of one relation for ``subjects`` (loss on the
    value only). Returns the training FLOPs (6 x parameters x tokens that pass through) and seconds."""
    rows = relation_lines(world, tokenizer, relation, subjects)
    arrow = tokenizer.encode_ordinary(" ->")

    def get_batch(split, step):
        rng = random.Random(seed * 1000 + step + (10**6 if split == "val" else 0))
        chosen = [rng.choice(rows) for _ in range(batch_size)]
        width = max(map(len, chosen)) - 1
        x = torch.full((batch_size, width), chosen[0][0], dtype=torch.long)
        y = torch.full((batch_size, width), -100, dtype=torch.long)
        for i, r in enumerate(chosen):
            start = next(j for j in range(len(r)) if r[j:j + len(arrow)] == arrow) + len(arrow) - 1
            x[i, : len(r) - 1] = torch.tensor(r[:-1])
            y[i, start: len(r) - 1] = torch.tensor(r[start + 1:])
        return x, y

    torch.manual_seed(seed)
    start = time.perf_counter()
    tokens = sum(int(get_batch("train", s)[0].numel()) for s in range(config.max_steps))
    Trainer(model, config, get_batch, device=next(model.parameters()).device).fit(progress=False)
    model.eval()
    return {"flops": 6 * model.num_params(non_embedding=False) * tokens, "tokens": tokens,
            "seconds": round(time.perf_counter() - start, 1)}


@torch.no_grad()
def zero_shot_accuracy(model: GPT, world: World, tokenizer: BPETokenizer, relation: str, subjects: list[str]) -> float:
    """Share of ``subjects`` for which "<|endoftext|>subject ->" greedily continues with the right value."""
    return held_out_few_shot_accuracy(model, world, tokenizer, relation, [], subjects, n_shots=0)


@torch.no_grad()
def held_out_few_shot_accuracy(model: GPT, world: World, tokenizer: BPETokenizer, relation: str,
                               examples_from: list[str], queries: list[str], n_shots: int, seed: int = 0) -> float:
    """Few-shot accuracy on ``queries`` with the ``n_shots`` examples of each prompt drawn from
    ``examples_from`` only (so that ICL and fine-tuning use the same labelled subjects)."""
    if not queries:
        raise ValueError("queries must not be empty")
    kind, attribute = _kind_attribute(relation)
    right = 0
    for i, query in enumerate(queries):
        shots = random.Random(seed * 10_007 + i).sample(examples_from, n_shots)
        prompt = "\n".join([f"{s} -> {world.facts(kind, s)[attribute]}" for s in shots] + [f"{query} ->"])
        right += _greedy_answers(model, tokenizer, prompt, f" {world.facts(kind, query)[attribute]}")
    return right / len(queries)


# -- induction heads in a model trained to copy ------------------------------------------------------
#: RoPE makes "the token one back" the same relative offset at every position, which a previous-token
#: head needs; with learned absolute positions this model forms no induction head in the same budget.
INDUCTION_CONFIG = GPTConfig(block_size=48, vocab_size=64, n_layer=2, n_head=4, n_embd=64, position="rope")
INDUCTION_TRAIN = TrainConfig(max_steps=1500, lr=1e-3, min_lr=1e-4, warmup_steps=50, eval_every=400, eval_batches=2)


def repeated_sequences(step: int, batch: int = 32, width: int = 48, vocab: int = 64, split: str = "train"):
    """(x, y) of shape (batch, width): each row is a start token 0, a random prefix of random length,
    then a random sequence of 8 to width // 2 - 1 tokens twice, then random filler; loss only on the
    second copy (its first token excepted). Tokens are drawn from 1..vocab-1. The copy's length and
    place vary from row to row, so "attend k positions back" cannot predict it: only a look-back to
    the same token's earlier occurrence can."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if width < 18:
        raise ValueError(f"width must be >= 18 (two copies of 8 tokens and a start token), got {width}")
    g = torch.Generator().manual_seed(2 * step + (split == "val"))
    x = torch.randint(1, vocab, (batch, width + 1), generator=g)
    x[:, 0] = 0
    y = torch.full((batch, width), -100, dtype=torch.long)
    lengths = torch.randint(8, width // 2, (batch,), generator=g)
    for row in range(batch):
        n = int(lengths[row])
        start = 1 + int(torch.randint(0, width + 1 - 2 * n, (1,), generator=g))
        x[row, start + n:start + 2 * n] = x[row, start:start + n]
        y[row, start + n:start + 2 * n - 1] = x[row, start + n + 1:start + 2 * n]
    return x[:, :-1], y


def train_induction_model(config: GPTConfig = INDUCTION_CONFIG, train: TrainConfig = INDUCTION_TRAIN,
                          record_every: int = 50, seed: int = 0) -> tuple[GPT, list[dict]]:
    """Train a small GPT on ``repeated_sequences`` (a few seconds on a CPU), recording every
    ``record_every`` steps the training loss and the best head's induction score: Olsson et al.
    (2022) saw induction heads appear in a sudden "phase change", and so can we."""
    length = config.block_size // 2
    torch.manual_seed(seed)
    model = GPT(config)
    trainer = Trainer(model, train, lambda split, step: repeated_sequences(step, width=config.block_size,
                                                                          vocab=config.vocab_size, split=split),
                      device="cpu")
    curve = []
    while trainer.step < train.max_steps:
        trainer.fit(steps=record_every, progress=False)
        scores = induction_scores(model, length=length, batch=8, token_range=(1, config.vocab_size))
        model.train()
        curve.append({"step": trainer.step, "loss": trainer.history.train_loss[-1], "score": float(scores.max())})
    return model.eval(), curve


def load_induction_model(device=None) -> tuple[GPT, list[dict]]:
    """The stored model of ``train_induction_model(seed=0)`` (a fresh copy) and its training curve.

    Training it takes about a minute on a CPU, too long for chapter 12 to run every time;
    ``python -m utils.icl --induction`` regenerates it. Defined in chapter 12."""
    model, info = load_checkpoint(INDUCTION_FILE, device)
    return model, list(info["curve"])


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train (or check) chapter 12's in-context-learning model.")
    parser.add_argument("--induction", action="store_true",
                        help="train the copying model of train_induction_model instead (utils/data/induction_model.pt)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = Path(__file__).resolve().parent / "data"
    if args.induction:
        start = time.perf_counter()
        model, curve = train_induction_model(seed=0)
        info = {"model_config": asdict(model.config), "train_config": asdict(INDUCTION_TRAIN), "seed": 0,
                "curve": curve, "train_seconds": round(time.perf_counter() - start, 1)}
        torch.save({"model": model.state_dict(), "info": info}, args.out or data / INDUCTION_FILE)
        print(json.dumps({"final": curve[-1], "train_seconds": info["train_seconds"]}))
        return 0
    args.out = args.out or data / ICL_FILE
    model, info = train_icl_model()
    torch.save({"model": model.state_dict(), "info": info}, args.out)
    print(json.dumps({k: info[k] for k in ("eval_loss", "train_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
