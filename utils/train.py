"""A small, complete training loop for the course GPT (chapter 8; reused in chapters 9 to 13).

    trainer = Trainer(model, TrainConfig(max_steps=300), get_batch)
    history = trainer.fit()                 # tqdm progress bar, periodic evaluation
    trainer.save("ckpt.pt"); Trainer.load("ckpt.pt", model, get_batch).fit()   # resume: same curve

What it does, each step: take a batch, compute the loss (bf16 autocast on capable GPUs), back-
propagate, clip the gradient norm, set the learning rate from a linear-warmup + cosine schedule,
and take an AdamW step with weight decay on matrices only (as GPT-2 and nanoGPT do). Every
``eval_every`` steps it averages the loss of ``eval_batches`` evaluation batches.

Deterministic: the batches come from ``get_batch(split, step)``, a function of the step number, so
a resumed run sees exactly the batches an uninterrupted run would have seen (with dropout 0, the
course default; dropout would also need the random generator's state).

Data-parallel under ``torchrun`` (``utils.distributed``): when a process group of several
processes is running, the trainer wraps the model in ``DistributedDataParallel``, each process
takes its contiguous block of rows of the global batch ``get_batch(split, step)``, and the loss is
weighted by the tokens each block holds, so the averaged gradient, the clipped step, the logged
train loss (summed over the processes) and the evaluation loss are those of one process on the
same global batch, up to float rounding (about 1e-6 on the CPU: ``tests/test_distributed.py``).
Only rank 0 writes checkpoints; they hold the plain model's weights and resume in one process.
Without a process group nothing changes: one process trains exactly as before.

Deliberately left out: gradient accumulation and mixed-precision loss scaling (bf16 needs none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from . import distributed
from .device import autocast_for
from .model import IGNORE_INDEX
from .validation import check_bool, check_int, check_real

__all__ = ["TrainConfig", "lr_at", "Trainer"]


@dataclass
class TrainConfig:
    max_steps: int = 300
    lr: float = 3e-3  # peak learning rate
    min_lr: float = 3e-4  # the cosine decays to this (10% of the peak, as in Chinchilla and nanoGPT)
    warmup_steps: int = 30  # linear warmup avoids large, noisy first updates with Adam
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)  # GPT-3's values
    grad_clip: float = 1.0  # maximum global gradient norm
    eval_every: int = 50
    eval_batches: int = 4
    compile: bool = False  # torch.compile: faster on GPUs, slow to start; off by default

    def __post_init__(self):
        check_int(self.max_steps, "max_steps", minimum=1)
        check_int(self.warmup_steps, "warmup_steps", minimum=0, maximum=self.max_steps)
        check_real(self.lr, "lr", 0.0, low_open=True)
        check_real(self.min_lr, "min_lr", 0.0, low_open=True)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be <= lr = {self.lr} (the cosine decays from lr to min_lr), got {self.min_lr}")
        check_real(self.weight_decay, "weight_decay", 0.0)  # a negative decay pushes weights away from 0
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            check_real(beta, f"betas[{i}]", 0.0, 1.0, high_open=True)
        # NaN would pass a `grad_clip <= 0` test and clip every gradient to NaN.
        check_real(self.grad_clip, "grad_clip", 0.0, low_open=True)
        check_int(self.eval_every, "eval_every", minimum=1)  # fit() evaluates when step % eval_every == 0
        check_int(self.eval_batches, "eval_batches", minimum=1)  # evaluate() averages over them
        check_bool(self.compile, "compile")


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warmup to ``lr``, then cosine decay to ``min_lr``.

    Example (lr 1, min_lr 0.1, warmup 10, 110 steps): step 0 -> 0.1, step 9 -> 1.0, step 60 -> 0.54,
    step 109 -> 0.1. Defined in chapter 8.
    """
    step = check_int(step, "step", minimum=0)  # a negative step would give a negative rate in warmup
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(config.max_steps - config.warmup_steps - 1, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


@dataclass
class History:
    steps: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    eval_steps: list = field(default_factory=list)
    eval_loss: list = field(default_factory=list)


class Trainer:
    """Train ``model`` (a ``utils.model.GPT``) on batches from ``get_batch(split, step) -> (x, y)``."""

    def __init__(self, model, config: TrainConfig, get_batch: Callable, device=None):
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            raise ValueError("model must be the plain model, not a DistributedDataParallel wrapper: the Trainer "
                             "wraps it itself when torchrun runs several processes")
        self.model = model
        self.config = config
        self.get_batch = get_batch
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings
        no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases and LayerNorm parameters
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas)
        self.step = 0
        self.history = History()
        self._forward = torch.compile(model) if config.compile else model
        self._ddp = distributed.is_distributed()  # several processes under torchrun: data-parallel
        if self._ddp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)  # copies rank 0's weights
            self._forward = torch.compile(wrapped) if config.compile else wrapped

    @torch.no_grad()
    def evaluate(self) -> float:
        if self._ddp:
            return self._evaluate_ddp()
        self.model.eval()
        losses = []
        for i in range(self.config.eval_batches):
            x, y = (t.to(self.device) for t in self.get_batch("val", i))
            with autocast_for(self.device):
                _, loss = self._forward(x, targets=y)
            losses.append(loss.item())
        self.model.train()
        return sum(losses) / len(losses)

    def fit(self, steps: int | None = None, progress: bool = True) -> History:
        """Train until ``max_steps`` (or for ``steps`` more steps). Returns the history so far."""
        from tqdm.auto import tqdm

        if steps is not None:
            check_int(steps, "steps", minimum=0)
        check_bool(progress, "progress")
        end = self.config.max_steps if steps is None else min(self.step + steps, self.config.max_steps)
        self.model.train()
        quiet = not progress or (self._ddp and not distributed.is_main())  # under DDP, one bar: rank 0's
        bar = tqdm(range(self.step, end), desc="training", disable=quiet, leave=False)
        for step in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(step, self.config)
            if self._ddp:
                loss, loss_value = self._ddp_step_loss(step)
            else:
                x, y = (t.to(self.device) for t in self.get_batch("train", step))
                with autocast_for(self.device):
                    _, loss = self._forward(x, targets=y)
                loss_value = None
            if not torch.isfinite(loss if loss_value is None else torch.tensor(loss_value)):
                value = loss.item() if loss_value is None else loss_value
                raise FloatingPointError(f"the loss became {value} at step {step}; lower the learning rate "
                                         f"(now {lr_at(step, self.config):.2e}) or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under DDP the gradients are averaged over the processes here
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            h = self.history
            h.steps.append(step)
            h.train_loss.append(loss.item() if loss_value is None else loss_value)
            h.lr.append(lr_at(step, self.config))
            h.grad_norm.append(float(grad_norm))
            self.step = step + 1
            if self.step % self.config.eval_every == 0 or self.step == self.config.max_steps:
                h.eval_steps.append(self.step)
                h.eval_loss.append(self.evaluate())
                bar.set_postfix(train=f"{h.train_loss[-1]:.3f}", val=f"{h.eval_loss[-1]:.3f}")
        return self.history

    # -- data-parallel (utils.distributed) -------------------------------------------------------
    def _local_batch(self, split: str, step: int):
        """This rank's rows of the global batch, and its share of the global batch's loss tokens."""
        x, y = self.get_batch(split, step)
        n_global = int((y != IGNORE_INDEX).sum())
        x, y = distributed.shard(x), distributed.shard(y)
        n_local = int((y != IGNORE_INDEX).sum())
        return x.to(self.device), y.to(self.device), n_local, n_global

    def _weighted_loss(self, forward, x, y, n_local: int, n_global: int):
        """This rank's part of the global mean loss: (sum of its token losses) / (tokens in the global batch)."""
        with autocast_for(self.device):
            logits, loss = forward(x, targets=y)
        if n_local == 0:  # no loss tokens in this block: a zero that still reaches every parameter
            return logits.float().sum() * 0.0
        return loss * (n_local / max(n_global, 1))

    def _ddp_step_loss(self, step: int):
        """(loss to back-propagate on this rank, global mean loss as a float, the same on every rank).

        DDP averages gradients over the W ranks, so each rank back-propagates W times its part:
        the average is then the gradient of the global mean, as in one process.
        """
        x, y, n_local, n_global = self._local_batch("train", step)
        part = self._weighted_loss(self._forward, x, y, n_local, n_global)
        total = part.detach().double().reshape(1).clone()
        torch.distributed.all_reduce(total)  # sum of the parts = the global mean loss
        return part * distributed.world_size(), total.item()

    def _evaluate_ddp(self) -> float:
        """Each rank scores its rows of every evaluation batch; the parts are summed over the ranks."""
        self.model.eval()
        parts = torch.zeros(self.config.eval_batches, dtype=torch.float64, device=self.device)
        for i in range(self.config.eval_batches):
            x, y, n_local, n_global = self._local_batch("val", i)
            parts[i] = self._weighted_loss(self._forward, x, y, n_local, n_global).double()
        torch.distributed.all_reduce(parts)
        self.model.train()
        return sum(parts.tolist()) / len(parts)

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """Model, optimiser, step, config and history: everything needed to resume exactly.

        Under DDP only rank 0 writes (every rank holds the same state), the weights are the plain
        model's (no ``module.`` prefix, so one process can load them), and every rank waits until
        the file is written.
        """
        if distributed.is_main():
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                        "train_config": asdict(self.config), "model_config": asdict(self.model.config),
                        "history": asdict(self.history)}, path)
        if self._ddp:
            torch.distributed.barrier()

    @classmethod
    def load(cls, path, model, get_batch: Callable, device=None) -> Trainer:
        """Restore a trainer from ``save``; ``model`` must have the checkpoint's configuration."""
        state = torch.load(path, map_location=device or "cpu", weights_only=False)
        if asdict(model.config) != state["model_config"]:
            raise ValueError(f"the model's config {asdict(model.config)} differs from the checkpoint's "
                             f"{state['model_config']}")
        model.load_state_dict(state["model"])
        config = TrainConfig(**{**state["train_config"], "betas": tuple(state["train_config"]["betas"])})
        trainer = cls(model, config, get_batch, device)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step = state["step"]
        trainer.history = History(**state["history"])
        return trainer
