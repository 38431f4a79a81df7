"""Shared by the benchmark scripts: time training steps of several models fairly, and print the result."""

import time

import torch


def race(contenders, tokens_per_step: int, steps: int, device) -> dict:
    """contenders: {name: (model, step_fn(optimizer))}; runs them
    interleaved, twice, after one warm-up step each, and returns the best tokens/s per name."""
    results: dict = {}
    for _ in range(2):
        for name, (model, step) in contenders.items():
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            step(opt)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step(opt)
            if device.type == "cuda":
                torch.cuda.synchronize()
            results.setdefault(name, []).append(tokens_per_step * steps / (time.perf_counter() - start))
    return {k: max(v) for k, v in results.items()}


def print_race(best: dict, header: str) -> None:
    print(header)
    for name, tps in best.items():
        print(f"  {name:<13} {tps:9,.0f} tokens/s")
    print(f"  ratio ours / transformers: {best['ours'] / best['transformers']:.2f}")
