"""Chapter 8's default pretraining run: time, and the gap between the model's loss and the tiny world's
entropy floor; then training throughput at the reference model's size, ours vs Hugging Face GPT-2.

    python benchmarks/pretraining.py [--device cpu|cuda|mps] [--steps 300]

The goal (issue 5): within the chapter's CPU budget (under 60 s), the exact loss is within 10% of
the floor. Prints figures; asserts nothing.
"""

import argparse
import time
from dataclasses import replace

import torch
from _throughput import print_race, race

from utils.device import get_device, seed_everything
from utils.model import GPT
from utils.pretraining import (
    REFERENCE_CONFIG,
    SMALL_CONFIG,
    SMALL_SENTENCES_PER_ROW,
    SMALL_TRAIN,
    WorldBatches,
    exact_cross_entropy,
    world_contexts,
    world_tokenizer,
)
from utils.tiny_world import World
from utils.train import Trainer


def chapter_run(device, steps):
    world, tok = World(0), world_tokenizer()
    floor = world.entropy_per_token(tok.encode_ordinary)
    data = WorldBatches(world, tok, sentences_per_row=SMALL_SENTENCES_PER_ROW, batch_size=32)
    seed_everything(0)
    model = GPT(SMALL_CONFIG).to(device)
    trainer = Trainer(model, replace(SMALL_TRAIN, max_steps=steps), data.get_batch)
    start = time.perf_counter()
    history = trainer.fit(progress=False)
    seconds = time.perf_counter() - start
    tokens = sum(int((data.get_batch("train", s)[1] != -100).sum()) for s in range(steps))
    exact = exact_cross_entropy(model, world, tok, world_contexts(world))
    print(f"chapter 8 run: {steps} steps, {tokens:,} scored tokens in {seconds:.1f} s ({tokens / seconds:,.0f} tokens/s)")
    print(f"  floor {floor:.4f} nats/token; sampled validation {history.eval_loss[-1]:.4f}; "
          f"exact cross-entropy {exact:.4f}")
    print(f"  gap to the floor: {exact / floor - 1:+.1%} (goal: within +10% in under 60 s)")
    for step, loss in zip(history.eval_steps, history.eval_loss):
        print(f"    step {step:>4}: validation {loss:.4f} ({loss / floor - 1:+.1%})")


def throughput(device, steps=10, batch=32):
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    c = REFERENCE_CONFIG
    torch.manual_seed(0)
    ours = GPT(c).to(device)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=c.block_size, vocab_size=c.vocab_size, n_layer=c.n_layer,
                                    n_head=c.n_head, n_embd=c.n_embd, resid_pdrop=0.0, embd_pdrop=0.0,
                                    attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)).to(device)
    data = WorldBatches(World(0), world_tokenizer(), 14, batch)  # the reference model's rows
    x, y = (t.to(device) for t in data.get_batch("train", 0))
    # HF shifts the labels itself (labels[t + 1] is the target at t), so it trains all but our last target
    labels = torch.cat([torch.full_like(x[:, :1], -100), y[:, :-1]], dim=1)

    def step_ours(opt):
        _, loss = ours(x, targets=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        opt.step()

    def step_hf(opt):
        loss = hf(x, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()

    best = race({"ours": (ours, step_ours), "transformers": (hf, step_hf)}, x.numel(), steps, device)
    print_race(best, f"training step at the reference size ({c.n_layer} layers, width {c.n_embd}, vocabulary "
                     f"{c.vocab_size}, batch {batch} x {x.shape[1]}), AdamW + clipping, fp32 on {device.type}:")

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    device = get_device(args.device)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"device: {device.type}, threads: {torch.get_num_threads()}")
    chapter_run(device, args.steps)
    throughput(device)


if __name__ == "__main__":
    main()
