"""Where the PyTorch code runs, and how every chapter seeds its random numbers (chapter 1).

One device helper and one seeding helper for the whole course: chapters never pick a device or
seed a generator any other way. A seed repeats a run on the same machine and software; another
CPU, thread count or GPU can change the last bits of training, which is why chapters assert their
claims on such outputs instead of storing their digits (CONTRIBUTING.md).
"""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["get_device", "seed_everything", "autocast_for", "bf16_autocast_enabled"]


def get_device(prefer: str | None = None):
    """Return the ``torch.device`` the course runs on: CUDA if there is a GPU, else the CPU.

    Apple's MPS is used only when asked for (``prefer="mps"`` or ``LLMCC_DEVICE=mps``): readers
    of other courses report MPS training losses far from the CPU's, and the chapters' claims have
    not been checked on it. ``prefer`` (or the environment variable ``LLMCC_DEVICE``) forces a
    device, e.g. ``"cpu"`` on a GPU machine; asking for one that is not there is an error now,
    not at the first tensor. Defined in chapter 1.
    """
    import torch

    choice = prefer or os.environ.get("LLMCC_DEVICE")
    if choice:
        allowed = ("cpu", "cuda", "mps")
        if not isinstance(choice, str) or choice.split(":")[0] not in allowed:
            raise ValueError(f"prefer must be one of {allowed} (optionally 'cuda:N'), got {choice!r}")
        kind = choice.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={choice!r} asks for a CUDA GPU, but PyTorch sees none; use 'cpu'")
        mps = getattr(torch.backends, "mps", None)
        if kind == "mps" and not (mps is not None and mps.is_available()):
            raise ValueError(f"prefer={choice!r} asks for Apple's MPS, which is not available here; use 'cpu'")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
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


def bf16_autocast_enabled(device) -> bool:
    """Whether ``autocast_for(device)`` turns on bf16 autocast.

    By default only on CUDA GPUs with native bf16 arithmetic (compute capability 8.0 and newer:
    A100, RTX 30xx, L4, H100). Older GPUs such as Colab's free T4 (7.5) report bf16 as
    "supported" because PyTorch emulates it, slowly, so they keep float32. The environment
    variable ``LLMCC_AUTOCAST`` overrides the choice: ``bf16`` forces it on any device (the test
    suite uses this on the CPU to check that the chapters' claims survive bf16), ``off`` disables it.
    Defined in chapter 7.
    """
    import torch

    choice = os.environ.get("LLMCC_AUTOCAST", "").strip().lower()
    if choice not in ("", "bf16", "off"):
        raise ValueError(f"LLMCC_AUTOCAST must be 'bf16', 'off' or unset, got {choice!r}")
    if choice:
        return choice == "bf16"
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_for(device):
    """bf16 autocast where bf16 is native (see ``bf16_autocast_enabled``); a no-op context elsewhere.

    Used around forward passes in generation and training (chapters 7 and 8): bf16 halves memory
    traffic on GPUs and keeps float32's range, so no loss scaling is needed. Defined in chapter 7.
    """
    import contextlib

    import torch

    device = torch.device(device)
    if bf16_autocast_enabled(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
