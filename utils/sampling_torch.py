"""Turning logits into the next token, in PyTorch and batched (chapter 1; used by the GPT in chapter 7).

The same operations, order and tie rules as the NumPy reference ``utils.sampling`` (read that
module first); tests check that the two agree on the same inputs and that both agree with
Hugging Face's logits processors. Logits have shape ``(B, V)`` (or ``(V,)``); the work runs on
whatever device the logits are on, in float32 (half-precision logits are upcast first).
"""

from __future__ import annotations

import torch

from .sampling import TOP_P_TOLERANCE
from .validation import (
    ArgumentTypeError,
    check_logits_shape,
    check_temperature,
    check_top_k,
    check_top_p,
    describe_bad_logits,
)

__all__ = [
    "as_logits",
    "softmax",
    "log_softmax",
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "filter_logits",
    "next_token_probs",
    "sample_next",
    "greedy_next",
    "cross_entropy",
]


def as_logits(logits: torch.Tensor, name: str = "logits") -> torch.Tensor:
    """Validate logits of shape (V,) or (B, V) and return them as a float tensor (float32 or float64)."""
    if not isinstance(logits, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    check_logits_shape(tuple(logits.shape), name)
    x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    message = describe_bad_logits(
        n_nan=int(torch.isnan(x).sum()),
        n_posinf=int(torch.isposinf(x).sum()),
        n_rows_all_masked=int(torch.isneginf(x).all(dim=-1).sum()),
        name=name,
    )
    if message:
        raise ValueError(message)
    return x


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension (PyTorch subtracts the max internally, as our NumPy code does)."""
    return torch.softmax(as_logits(logits), dim=-1)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last dimension."""
    return torch.log_softmax(as_logits(logits), dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by the temperature T (> 0)."""
    return as_logits(logits) / check_temperature(temperature)


def top_k_filter(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Set logits below the k-th largest (per row) to -inf; ties with the k-th largest are kept."""
    x = as_logits(logits)
    k = check_top_k(top_k)
    if k is None or k >= x.shape[-1]:
        return x.clone()
    kth_largest = torch.topk(x, k, dim=-1).values[..., -1:]  # (..., 1)
    return x.masked_fill(x < kth_largest, float("-inf"))


def _float64(x: torch.Tensor) -> torch.Tensor:
    """x in float64, on the CPU if x's device has no float64 (Apple's MPS)."""
    return x.double() if x.device.type != "mps" else x.cpu().double()


def top_p_filter(logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2020) with the boundary and tie rule of ``utils.sampling``.

    The kept set is computed in float64 whatever the logits' dtype: a float32 cumulative sum over
    50,000 tokens is off by more than the probability of the tokens at the boundary, and NumPy and
    PyTorch would then keep different sets. The returned logits keep their dtype.
    """
    x = as_logits(logits)
    p = check_top_p(top_p)
    if p is None or p == 1.0:
        return x.clone()
    x64 = _float64(x)
    sorted_logits, _ = torch.sort(x64, dim=-1, descending=True)  # rank by logit: equal logits are ties
    sorted_probs = torch.softmax(sorted_logits, dim=-1)  # (..., V)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    mass_before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1)
    n_keep = (mass_before < p - TOP_P_TOLERANCE).sum(dim=-1, keepdim=True).clamp(min=1)  # (..., 1)
    threshold = torch.gather(sorted_logits, -1, n_keep - 1)  # logit of the last kept token
    return x.masked_fill((x64 < threshold).to(x.device), float("-inf"))


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (the order of ``utils.sampling.filter_logits``)."""
    x = apply_temperature(logits, temperature)
    x = top_k_filter(x, top_k)
    return top_p_filter(x, top_p)


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """Filter, then renormalise: the distribution the sampler draws from."""
    return torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None):
    """Draw next token ids: a LongTensor (B,) for (B, V) logits, an int for (V,).

    Pass ``torch.Generator(device=logits.device).manual_seed(seed)`` for a reproducible draw.
    """
    probs = next_token_probs(logits, temperature, top_k, top_p)
    ids = torch.multinomial(probs.reshape(-1, probs.shape[-1]), num_samples=1, generator=generator)  # (B, 1)
    return int(ids[0, 0]) if probs.dim() == 1 else ids[:, 0]


def greedy_next(logits: torch.Tensor):
    """Argmax over the vocabulary (lowest id among equal maxima, as ``torch.argmax`` documents)."""
    ids = torch.argmax(as_logits(logits), dim=-1)
    return int(ids) if ids.dim() == 0 else ids


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row loss -log P(target): logits (B, V) and target (B,) -> (B,); (V,) and a scalar -> scalar."""
    logp = log_softmax(logits)
    target = torch.as_tensor(target, device=logp.device)
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ArgumentTypeError(f"target must be integer token id(s), got {target!r:.60} (dtype {target.dtype})")
    expected = () if logp.dim() == 1 else (logp.shape[0],)
    if tuple(target.shape) != expected:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits shape {tuple(logp.shape)}: "
                         f"expected {expected}")
    vocab = logp.shape[-1]
    if bool(((target < 0) | (target >= vocab)).any()):
        raise ValueError(f"target ids must be in [0, {vocab - 1}] (the vocabulary), got {target.tolist()}")
    return -logp.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)

