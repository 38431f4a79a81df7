"""Chapter 7's parameter counts, checked against PyTorch and Hugging Face (shapes only, no download).

The chapter prints these figures; the test keeps its prose honest when utils.model changes: the
closed-form count per block and for the whole model, and the MLP's share (two thirds of a block,
45.5% of GPT-2 small as a whole because of its embeddings).
"""

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.pretraining import REFERENCE_CONFIG


def closed_form(config):
    C, V, P, L = config.n_embd, config.vocab_size, config.block_size, config.n_layer
    mlp = 8 * C * C + 5 * C
    block = (4 * C * C + 4 * C) + mlp + 4 * C
    return dict(block=block, mlp=mlp, total=V * C + P * C + L * block + 2 * C)


@pytest.mark.parametrize("config", [REFERENCE_CONFIG, GPTConfig(), GPTConfig(n_layer=24, n_head=16, n_embd=1024)],
                         ids=["reference", "gpt2-small", "gpt2-medium"])
def test_closed_form_matches_pytorch(config):
    with torch.device("meta"):
        model = GPT(config)
    counts = closed_form(config)
    assert model.num_params(non_embedding=False) == counts["total"]
    block = model.transformer.h[0]
    assert sum(p.numel() for p in block.parameters()) == counts["block"]
    assert sum(p.numel() for p in block.mlp.parameters()) == counts["mlp"]


def test_gpt2_small_matches_hugging_face_and_the_chapter_shares():
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    counts = closed_form(GPTConfig())
    assert sum(p.numel() for p in hf.parameters()) == counts["total"] == 124_439_808
    hf_mlp = sum(p.numel() for name, p in hf.named_parameters() if ".mlp." in name)
    assert hf_mlp == 12 * counts["mlp"]
    assert round(counts["mlp"] / counts["block"], 3) == 0.666  # per block: two thirds
    assert round(hf_mlp / counts["total"], 3) == 0.455  # the whole model: the embeddings dilute it
