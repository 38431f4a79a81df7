"""What a longer context costs: KV-cache memory and attention FLOPs (chapter 3).

Formulas (stated so that tests can check them by hand):

- **KV cache.** At every layer, each past token keeps one key and one value vector per
  key/value head: ``2 x n_layers x n_kv_heads x head_dim x n_tokens x bytes_per_value`` bytes
  (times the batch size). Grouped-query attention (GQA; Ainslie et al., EMNLP 2023) shares each
  key/value head among several query heads, so ``n_kv_heads < n_heads`` shrinks the cache by
  ``n_heads / n_kv_heads``; multi-head attention (MHA) has ``n_kv_heads == n_heads``.
- **Attention FLOPs** for a whole sequence of n tokens, per layer and query head: the scores
  ``Q K^T`` take ``2 n^2 head_dim`` FLOPs (a multiply and an add per term) and ``weights @ V``
  another ``2 n^2 head_dim``: ``4 n^2 head_dim n_heads n_layers`` in all. A causal kernel that
  skips the masked half does about half of that; we count the full matrix, as the O(n^2) story does.
- **The rest of the model** costs about ``2 N`` FLOPs per token, where N is the number of
  non-embedding parameters (the weights of every layer, without the token and position embedding
  tables): a multiply and an add per weight. Kaplan et al. (2020, Table 1) count the forward pass
  per token as C_forward ~ 2N + 2 n_layer n_ctx d_attn, with N ~ 2 d_model n_layer (2 d_attn + d_ff);
  their second term is attention's, half of our full-matrix ``4 n head_dim n_heads n_layers`` per
  token (the causal half). Linear in n; attention's n^2 term overtakes it at long contexts.
- **Score memory.** Computed naively, each layer stores its heads' n x n score matrices
  (``attention_score_bytes``). FlashAttention (Dao et al., NeurIPS 2022) and the fused kernels built
  on it compute the softmax tile by tile and never store the full matrix, so their memory grows
  linearly with n; what stays quadratic is the compute.

Deliberately left out: projections inside attention (they are part of the 2N), softmax and
normalisation FLOPs (O(n^2) but small), and memory for activations during training.
"""

from __future__ import annotations

from dataclasses import dataclass

from .validation import check_int

__all__ = ["ModelShape", "GPT2_SMALL", "LLAMA_STYLE_8B_MHA", "LLAMA_STYLE_8B_GQA", "kv_cache_bytes",
           "attention_flops", "attention_score_bytes", "dense_flops_per_token", "GIB", "MIB"]

MIB, GIB = 2**20, 2**30


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layers: int
    n_heads: int  # query heads
    n_kv_heads: int  # key/value heads (== n_heads for multi-head attention)
    head_dim: int
    n_params: int  # non-embedding parameters, for the 2N FLOPs-per-token estimate

    def __post_init__(self):
        for f in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "n_params"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")

    @property
    def d_model(self) -> int:
        return self.n_heads * self.head_dim


#: GPT-2 small (Radford et al., 2019): 12 layers, 12 heads of 64, ~85M non-embedding parameters
#: (12 layers x 12 x 768^2 weights, ignoring biases and LayerNorms).
GPT2_SMALL = ModelShape("GPT-2 small (MHA)", n_layers=12, n_heads=12, n_kv_heads=12, head_dim=64,
                        n_params=12 * 12 * 768**2)
#: A Llama-3-8B-style shape (Meta, 2024): 32 layers, 32 query heads of 128, 8 key/value heads (GQA),
#: about 7B non-embedding parameters. The MHA twin is the same model with 32 key/value heads.
LLAMA_STYLE_8B_GQA = ModelShape("Llama-style 8B (GQA, 8 KV heads)", n_layers=32, n_heads=32, n_kv_heads=8,
                                head_dim=128, n_params=7_000_000_000)
LLAMA_STYLE_8B_MHA = ModelShape("Llama-style 8B (MHA)", n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128,
                                n_params=7_000_000_000)


def _check_tokens(n_tokens) -> None:
    if not isinstance(n_tokens, int) or isinstance(n_tokens, bool) or n_tokens < 0:
        raise ValueError(f"n_tokens must be an integer >= 0, got {n_tokens!r}")


def kv_cache_bytes(shape: ModelShape, n_tokens: int, bytes_per_value: int = 2, batch: int = 1) -> int:
    """2 x layers x kv_heads x head_dim x tokens x bytes (x batch). fp16/bf16: 2 bytes. Defined in chapter 3."""
    _check_tokens(n_tokens)
    check_int(batch, "batch", minimum=1)
    if isinstance(bytes_per_value, bool) or bytes_per_value not in (1, 2, 4):
        raise ValueError(f"bytes_per_value must be 1 (int8/fp8), 2 (fp16/bf16) or 4 (fp32), got {bytes_per_value}")
    return 2 * shape.n_layers * shape.n_kv_heads * shape.head_dim * n_tokens * bytes_per_value * batch


def attention_flops(shape: ModelShape, n_tokens: int) -> int:
    """FLOPs of QK^T and weights@V over a whole sequence: 4 n^2 head_dim n_heads n_layers. Defined in chapter 3."""
    _check_tokens(n_tokens)
    return 4 * n_tokens**2 * shape.head_dim * shape.n_heads * shape.n_layers


def attention_score_bytes(shape: ModelShape, n_tokens: int, bytes_per_value: int = 2) -> int:
    """Memory for one layer's n x n score matrices if they are stored: heads x n^2 x bytes. Defined in chapter 3.

    Fused kernels (FlashAttention, Dao et al. 2022; PyTorch's scaled_dot_product_attention on GPUs)
    compute the softmax in tiles and never store them: this is the naive cost, not a real one.
    """
    _check_tokens(n_tokens)
    return shape.n_heads * n_tokens**2 * bytes_per_value


def dense_flops_per_token(shape: ModelShape) -> int:
    """About 2N FLOPs per token for the weight matrices (Kaplan et al., 2020). Defined in chapter 3."""
    return 2 * shape.n_params
