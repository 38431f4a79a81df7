"""In-context learning on the tiny world: a model that can use examples in its prompt (chapter 12).

The reference model of chapter 8 saw only independent world sentences, so nothing in its
training rewarded looking back at earlier lines: given "Kalo -> Kaloville\\nVengri ->" it
answers nothing useful at any number of examples. Real pretraining text is full of lists,
tables and repeated names. ``ICLBatches`` mixes three kinds of rows:

    world text (as in chapter 8)
    few-shot lists   "Kalo -> Kaloville\\nRispel -> Beltenville\\nQuo -> Quoville\\n"  (one relation per list)
    repeat rows      a random token sequence, then the same sequence again (loss only on the repeat)

``python -m utils.icl`` continues training the reference model on this mixture and writes
``utils/data/icl_model.pt``; ``load_icl_model()`` loads it. (Not shipped yet: chapter 12 is in
preparation. 200 steps, about 60 s on 2 CPU cores, give ~100% few-shot accuracy from one example
on, unchanged with wrong labels, but no induction heads yet: see the session notes.) ``few_shot_accuracy`` scores a model
on ``World.few_shot_prompt`` and ``induction_scores`` measures, per head, how much attention goes
from a repeated token to the token that followed its first occurrence (Olsson et al., 2022).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from .bpe import BPETokenizer
from .model import GPT, apply_rope, rope_cos_sin
from .pretraining import load_checkpoint, load_reference, reference_batches, world_tokenizer
from .tiny_world import RELATIONS, World
from .train import TrainConfig, Trainer

__all__ = ["ICLBatches", "ICL_TRAIN", "train_icl_model", "load_icl_model", "few_shot_accuracy",
           "attention_patterns", "induction_scores"]

ICL_TRAIN = TrainConfig(max_steps=200, lr=1e-3, min_lr=1e-4, warmup_steps=10, eval_every=50, eval_batches=2)
ICL_FILE = "icl_model.pt"
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


@torch.no_grad()
def few_shot_accuracy(model: GPT, world: World, tokenizer: BPETokenizer, relation: str, n_shots: int, n: int = 40,
                      wrong_labels: bool = False, seed: int = 10**6, separator: str = " ->") -> float:
    """Share of ``n`` few-shot prompts whose greedy continuation is exactly the right value.

    ``separator`` replaces " ->" in the prompt (to test sensitivity to the format). Defined in chapter 12.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    device = next(model.parameters()).device
    eot = tokenizer.special_tokens["<|endoftext|>"]
    right = 0
    for i in range(n):
        prompt, answer = world.few_shot_prompt(random.Random(seed + i), relation, n_shots, wrong_labels=wrong_labels)
        ids = torch.tensor([[eot] + tokenizer.encode_ordinary(prompt.replace(" ->", separator))], device=device)
        target = tokenizer.encode_ordinary(answer)
        out = model.generate(ids, len(target), greedy=True)[0, ids.shape[1]:].tolist()
        right += out == target
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


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train (or check) chapter 12's in-context-learning model.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / ICL_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, info = train_icl_model()
    torch.save({"model": model.state_dict(), "info": info}, args.out)
    print(json.dumps({k: info[k] for k in ("eval_loss", "train_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
