"""Where the PyTorch code runs, and how every chapter makes its numbers reproducible (chapter 1).

One device helper and one seeding helper for the whole course: chapters never pick a device or
seed a generator any other way.
"""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["get_device", "seed_everything", "autocast_for"]


def get_device(prefer: str | None = None):
    """Return the best available ``torch.device``: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the environment variable ``LLMCC_DEVICE``) forces one, e.g. ``"cpu"`` to
    reproduce the book's stored outputs on a GPU machine. Defined in chapter 1.
    """
    import torch

    choice = prefer or os.environ.get("LLMCC_DEVICE")
    if choice:
        allowed = ("cpu", "cuda", "mps")
        if choice.split(":")[0] not in allowed:
            raise ValueError(f"prefer must be one of {allowed} (optionally 'cuda:N'), got {choice!r}")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (all devices).

    Returns a fresh ``np.random.default_rng(seed)`` so that code can also pass an explicit
    generator around, which is the better habit. Defined in chapter 1.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the NumPy-only parts of the course still work
        pass
    else:
        torch.manual_seed(seed)  # seeds CPU, CUDA and MPS generators
    return np.random.default_rng(seed)


def autocast_for(device):
    """bf16 autocast on a CUDA GPU that supports it; a no-op context everywhere else (CPU, MPS).

    Used around forward passes in generation and training (chapters 7 and 8): bf16 halves memory
    traffic on GPUs and keeps float32's range, so no loss scaling is needed. Defined in chapter 7.
    """
    import contextlib

    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
