"""The course's GPT, in one readable file (chapter 7; the pieces are built up in chapters 4 to 6).

GPT-2 compatible by default: learned absolute positions, pre-LayerNorm blocks, GELU (tanh
approximation), and an output head tied to the token embedding (Radford et al., 2019). It can load
Hugging Face's GPT-2 weights (``GPT.from_hf_state_dict``). A RoPE option (Su et al., 2021) rotates
queries and keys instead of adding position vectors; chapter 8 uses it to extend the context.

Shapes, named once for every comment below:
    B  batch size            T  sequence length (tokens)        C  n_embd, the model width
    nh number of heads       hs head size = C / nh              V  vocabulary size

    idx (B, T) token ids -> tok_emb (B, T, C) [+ pos_emb (T, C)] -> n_layer x Block -> ln_f -> lm_head -> (B, T, V)
    Block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))

Attention uses ``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel on GPUs);
generation runs under bf16 autocast on CUDA GPUs that support it (``utils.device.autocast_for``).
Generation keeps a KV cache: each layer stores the keys and values of past tokens, so a new
token costs one position's work instead of the whole prefix's.

Deliberately left out: dropout in attention weights during generation, weight decay groups and
the optimiser (see utils.train, chapter 8), Flash-attention specifics, mixture of experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import sampling_torch
from .device import autocast_for
from .validation import ArgumentTypeError, check_bool, check_choice, check_int, check_real

#: Targets equal to this are skipped by the loss (PyTorch's default ``ignore_index``); the course
#: writes it for padding and for prompt tokens in fine-tuning (chapters 8 and 9).
IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX", "GPTConfig", "CausalSelfAttention", "MLP", "Block", "GPT", "KVCache", "rope_cos_sin", "apply_rope",
           "weights_fingerprint"]


@dataclass
class GPTConfig:
    block_size: int = 1024  # the longest sequence the model is trained for (GPT-2: 1,024)
    vocab_size: int = 50257  # GPT-2's BPE: 50,000 merges + 256 bytes + <|endoftext|>
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # GPT-2 trained with 0.1; 0 for fine-tuning and for exact comparisons
    bias: bool = True  # GPT-2 has biases in Linear layers and LayerNorms
    position: str = "learned"  # "learned" (GPT-2) or "rope" (rotary, as in Llama)
    rope_base: float = 10000.0  # RoPE's frequency base (Su et al., 2021)
    rope_scale: float = 1.0  # > 1: position interpolation, positions are divided by it (Chen et al., 2023)
    layer_norm_eps: float = 1e-5  # GPT-2's value

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            check_int(getattr(self, name), name, minimum=1)  # True is not a size
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}), "
                             f"so that every head gets n_embd / n_head dimensions")
        check_choice(self.position, "position", ("learned", "rope"))
        if self.position == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"RoPE rotates pairs of dimensions: head size {self.n_embd // self.n_head} must be even")
        check_real(self.dropout, "dropout", 0.0, 1.0, high_open=True)
        check_bool(self.bias, "bias")
        # Bad RoPE values give NaN angles, which CPU attention turns into zeros: logits that look
        # fine and are wrong. So they are refused here, even for position="learned" (a config is
        # often switched to RoPE later by dataclasses.replace).
        check_real(self.rope_base, "rope_base", 0.0, low_open=True)
        check_real(self.rope_scale, "rope_scale", 1.0)
        check_real(self.layer_norm_eps, "layer_norm_eps", 0.0, low_open=True)


def _check_ids_tensor(ids, name: str) -> None:
    """Token ids must be an integer tensor: float ids would otherwise fail deep inside nn.Embedding."""
    if not isinstance(ids, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor of token ids (dtype torch.long), got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ArgumentTypeError(f"{name} must hold integer token ids (dtype torch.long), got dtype {ids.dtype}")


# --- rotary position embedding -----------------------------------------------------------------

def rope_cos_sin(positions: torch.Tensor, head_size: int, base: float = 10000.0, scale: float = 1.0):
    """cos and sin of the rotation angles, each (T, hs/2): angle = (position / scale) * base^(-2i/hs)."""
    # Checked here too: chapter 8 changes config.rope_scale on a built model, past GPTConfig's checks.
    base, scale = check_real(base, "rope_base", 0.0, low_open=True), check_real(scale, "rope_scale", 1.0)
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device) / head_size)
    angles = (positions.float() / scale)[:, None] * inv_freq[None, :]  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) of x (B, nh, T, hs) by its angle. q.k then depends on the offset only."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, nh, T, hs/2) each
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs/2, 2)
    return rotated.flatten(-2).type_as(x)  # interleave back to (B, nh, T, hs)


# --- the KV cache ------------------------------------------------------------------------------

class KVCache:
    """Per-layer keys and values of the tokens seen so far, each (B, nh, T_past, hs).

    They live in buffers with room for ``capacity`` positions (doubled when they fill up), so each
    new token is written into its slot; appending with ``torch.cat`` would copy the whole past at
    every token, O(T^2) copying over a generation. ``generate`` sizes the buffers once.
    """

    def __init__(self, n_layer: int, capacity: int = 0):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.lengths = [0] * n_layer  # positions filled, per layer
        self.capacity = capacity

    @property
    def length(self) -> int:
        return self.lengths[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append k, v (B, nh, T, hs) to this layer's past; return all keys and values so far."""
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        old_k, old_v = self.k[layer], self.v[layer]
        if old_k is None or end > old_k.shape[2] or old_k.dtype != k.dtype:
            size = max(end, self.capacity, 2 * old_k.shape[2] if old_k is not None else 0)
            B, nh, _, hs = k.shape
            self.k[layer], self.v[layer] = k.new_empty(B, nh, size, hs), v.new_empty(B, nh, size, hs)
            if start:
                self.k[layer][:, :, :start], self.v[layer][:, :, :start] = old_k[:, :, :start], old_v[:, :, :start]
        self.k[layer][:, :, start:end], self.v[layer][:, :, start:end] = k, v
        self.lengths[layer] = end
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


# --- the model -----------------------------------------------------------------------------------

class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout
        self.config = config

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if self.config.position == "rope":
            cos, sin = rope_cos_sin(positions, hs, self.config.rope_base, self.config.rope_scale)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, T_past + T, hs)
        T_k = k.shape[2]
        if T == T_k:
            mask, causal = None, True  # the usual training case: a full causal mask
        elif T == 1:
            mask, causal = None, False  # one new token may see every cached one
        else:  # several new tokens after a cached prefix: causal, aligned to the end
            mask = torch.ones(T, T_k, dtype=torch.bool, device=x.device).tril(diagonal=T_k - T)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # merge the heads back: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """FFN(x) = GELU(x W1 + b1) W2 + b2 with a 4x wider hidden layer (chapter 6: the model's memory)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 uses the tanh approximation
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, positions, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), positions, cache, layer)  # pre-LayerNorm: normalise the branch input,
        x = x + self.mlp(self.ln_2(x))  # and add the branch to the residual stream x
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None,
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the tied head is counted once. non_embedding drops wte and wpe (Kaplan et al. 2020)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if self.transformer.wpe is not None:
                n -= self.transformer.wpe.weight.numel()
        return n

    def features(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) -> the final LayerNorm's output (B, T, C), the input of the head (a reward
        model puts its own head here: chapter 10)."""
        _check_ids_tensor(idx, "idx")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        B, T = idx.shape
        if T == 0:
            raise ValueError("idx must contain at least one token, got T = 0")
        past = cache.length if cache is not None else 0
        if self.config.position == "learned" and past + T > self.config.block_size:
            raise ValueError(f"sequence length {past + T} exceeds block_size {self.config.block_size}: learned "
                             "positions only exist up to block_size (crop the context, or use position='rope')")
        if idx.device != self.transformer.wte.weight.device:
            raise ValueError(f"idx is on {idx.device} but the model is on {self.transformer.wte.weight.device}; "
                             "move one of them (idx.to(device))")
        if bool(((idx < 0) | (idx >= self.config.vocab_size)).any()):
            bad = idx[(idx < 0) | (idx >= self.config.vocab_size)][:5].tolist()
            raise ValueError(f"idx must hold token ids in [0, {self.config.vocab_size - 1}], got {bad}")
        positions = torch.arange(past, past + T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.transformer.wpe is not None:
            x = x + self.transformer.wpe(positions)  # (T, C) broadcasts over the batch
        x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, positions, cache, layer)
        return self.transformer.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """idx (B, T) -> (logits (B, T, V), loss or None). With a cache, idx continues the cached tokens."""
        x = self.features(idx, cache)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            self._check_targets(targets, idx)
            # Next-token prediction is classification at every position; IGNORE_INDEX marks positions without loss.
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return logits, loss

    def _check_targets(self, targets: torch.Tensor, idx: torch.Tensor) -> None:
        """Targets are token ids of idx's shape, or IGNORE_INDEX (-100) where a position has no loss."""
        _check_ids_tensor(targets, "targets")
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        if targets.device != idx.device:
            raise ValueError(f"targets are on {targets.device} but idx is on {idx.device}; move them (targets.to(device))")
        bad = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= self.config.vocab_size))
        if bool(bad.any()):
            raise ValueError(f"targets must be token ids in [0, {self.config.vocab_size - 1}] or {IGNORE_INDEX} "
                             f"(no loss at that position), got {targets[bad][:5].tolist()}")

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False, generator: torch.Generator | None = None,
                 use_cache: bool = True, crop: bool = False, stop_token: int | None = None) -> torch.Tensor:
        """Continue idx (B, T) by max_new_tokens tokens with chapter 1's sampler (utils.sampling_torch).

        ``crop=True`` keeps only the last block_size tokens when the context grows too long (this
        disables the cache, which cannot drop old positions); otherwise a too-long context is an error.
        ``stop_token`` (e.g. ``<|endoftext|>``, Hugging Face's ``eos_token_id``): a row that has produced
        it continues with copies of it, and generation ends early once every row has; each row's
        tokens up to its first stop token are the same as without ``stop_token``.
        """
        max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=0)
        if stop_token is not None:
            stop_token = check_int(stop_token, "stop_token", minimum=0, maximum=self.config.vocab_size - 1)
        greedy, use_cache, crop = (check_bool(v, n) for v, n in ((greedy, "greedy"), (use_cache, "use_cache"),
                                                                 (crop, "crop")))
        _check_ids_tensor(idx, "idx")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}; use idx[None] for one sequence")
        limit = self.config.block_size
        # the last generated token is never fed back, so the model sees at most T + max_new_tokens - 1
        if not crop and idx.shape[1] + max_new_tokens - 1 > limit and self.config.position == "learned":
            raise ValueError(f"prompt ({idx.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds block_size ({limit}); "
                             "pass crop=True to keep only the last block_size tokens")
        was_training = self.training
        self.eval()  # no dropout while generating; restored below
        cache = KVCache(self.config.n_layer, capacity=idx.shape[1] + max_new_tokens) if use_cache and not crop else None
        next_input = idx
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)  # rows that have stopped
        for _ in range(max_new_tokens):
            with autocast_for(idx.device):  # bf16 on GPUs that support it, a no-op on CPU and MPS
                if cache is None:
                    context = idx[:, -limit:] if crop else idx
                    logits, _ = self(context)
                else:
                    logits, _ = self(next_input, cache=cache)
            last = logits[:, -1, :].float()  # (B, V): only the last position predicts the next token
            if greedy:
                nxt = sampling_torch.greedy_next(last)
            else:
                nxt = sampling_torch.sample_next(last, temperature, top_k, top_p, generator=generator)
            nxt = nxt.view(-1, 1) if torch.is_tensor(nxt) else torch.tensor([[nxt]], device=idx.device)
            if stop_token is not None:
                nxt = nxt.masked_fill(done.view(-1, 1), stop_token)
                done |= nxt.view(-1) == stop_token
            idx = torch.cat([idx, nxt], dim=1)
            next_input = nxt
            if stop_token is not None and bool(done.all()):
                break
        self.train(was_training)
        return idx

    # --- Hugging Face GPT-2 weights --------------------------------------------------------------
    @classmethod
    def from_hf_state_dict(cls, state_dict: dict, config: GPTConfig) -> GPT:
        """Build a GPT from a Hugging Face ``GPT2LMHeadModel`` state dict.

        HF's GPT-2 stores its Linear layers as ``Conv1D`` with the weight transposed (in, out), so
        those four matrices are transposed here. Works offline for any state dict; chapter 7 uses
        ``from_pretrained_gpt2`` to download the real weights when online.
        """
        model = cls(config)
        sd = {k.removeprefix("transformer."): v for k, v in state_dict.items()
              if not k.endswith((".attn.bias", ".attn.masked_bias"))}  # HF's causal-mask buffers
        if "lm_head.weight" in sd and not torch.equal(sd["lm_head.weight"], sd.get("wte.weight", sd["lm_head.weight"])):
            raise ValueError("the state dict's lm_head is not tied to wte; this model ties them, as GPT-2 does")
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        ours = model.state_dict()
        for key, value in sd.items():
            if key == "lm_head.weight":
                continue  # tied to wte
            target = f"transformer.{key}"
            if target not in ours:
                raise ValueError(f"unexpected key in the Hugging Face state dict: {key}")
            value = value.t() if key.endswith(transposed) else value
            if ours[target].shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)} does not match ours {tuple(ours[target].shape)}; "
                                 "is the config the same as the checkpoint's?")
            with torch.no_grad():
                ours[target].copy_(value)
        missing = {k for k in ours if k != "lm_head.weight"} - {f"transformer.{k}" for k in sd}
        if missing:
            raise ValueError(f"the state dict lacks {len(missing)} tensor(s) the model needs, e.g. {sorted(missing)[:3]}")
        return model

    @classmethod
    def from_pretrained_gpt2(cls, name: str = "gpt2") -> GPT:
        """Download OpenAI's GPT-2 weights from the Hugging Face Hub (needs internet, e.g. in Colab)."""
        from transformers import GPT2LMHeadModel

        sizes = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280),
                 "gpt2-xl": (48, 25, 1600)}
        if name not in sizes:
            raise ValueError(f"name must be one of {sorted(sizes)}, got {name!r}")
        n_layer, n_head, n_embd = sizes[name]
        hf = GPT2LMHeadModel.from_pretrained(name)
        return cls.from_hf_state_dict(hf.state_dict(), GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd))


def weights_fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of every weight's name and exact bytes: equal fingerprints mean identical weights.
    Chapters 12 and 13 use it to show that prompting (few-shot examples, chains of thought) changes none."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
