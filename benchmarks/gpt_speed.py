"""The course GPT on this machine: KV-cache generation vs recomputation, and training throughput vs
Hugging Face's GPT2LMHeadModel at the same size.

    python benchmarks/gpt_speed.py [--device cpu|cuda|mps] [--lengths 256 512 1024]

Prints figures; asserts nothing except that the cached and uncached runs produce the same tokens.
"""

import argparse
import time

import torch
from _throughput import print_race, race

from utils.device import get_device
from utils.model import GPT, GPTConfig

CONFIG = dict(block_size=1024, vocab_size=4096, n_layer=6, n_head=6, n_embd=384)  # ~10.6M non-embedding params


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def generation(model, device, lengths):
    print(f"generation, greedy, batch 1, prompt of 8 tokens (config {CONFIG})")
    prompt = torch.randint(0, CONFIG["vocab_size"], (1, 8), generator=torch.Generator().manual_seed(0)).to(device)
    for total in lengths:
        new = total - prompt.shape[1]
        t_cache, a = timed(lambda new=new: model.generate(prompt, new, greedy=True, use_cache=True), device)
        t_full, b = timed(lambda new=new: model.generate(prompt, new, greedy=True, use_cache=False), device)
        assert torch.equal(a, b), "the KV cache changed the generated tokens"
        print(f"  {total:>5} tokens: KV cache {t_cache:7.2f} s, recompute {t_full:7.2f} s, "
              f"speedup {t_full / t_cache:5.1f}x, same tokens: True")


def training(device, steps=5, batch=8, seq=256):
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**CONFIG)).to(device)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=CONFIG["block_size"], vocab_size=CONFIG["vocab_size"],
                                    n_layer=CONFIG["n_layer"], n_head=CONFIG["n_head"], n_embd=CONFIG["n_embd"],
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    bos_token_id=0, eos_token_id=0)).to(device)
    data = torch.randint(0, CONFIG["vocab_size"], (batch, seq + 1), generator=torch.Generator().manual_seed(1)).to(device)

    def step_ours(opt):
        _, loss = ours(data[:, :-1], targets=data[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_hf(opt):
        loss = hf(data, labels=data).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    best = race({"ours": (ours, step_ours), "transformers": (hf, step_hf)}, batch * seq, steps, device)
    print_race(best, f"training, batch {batch} x {seq} tokens, AdamW, fp32 on {device.type}:")

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args()
    device = get_device(args.device)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).to(device).eval()
    print(f"device: {device.type}, threads: {torch.get_num_threads()}")
    generation(model, device, args.lengths)
    training(device)


if __name__ == "__main__":
    main()
