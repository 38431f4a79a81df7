"""The trainer: schedule, learning, exact resume, clear failures."""

import math

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.train import TrainConfig, Trainer, lr_at

MODEL = dict(block_size=32, vocab_size=40, n_layer=2, n_head=2, n_embd=32)


def counting_batches(split, step):
    """Sequences that count up from a random start: learnable, and a function of (split, step) only."""
    g = torch.Generator().manual_seed((0 if split == "train" else 10_000) + step)
    start = torch.randint(0, 40, (8, 1), generator=g)
    data = (start + torch.arange(17)) % 40
    return data[:, :-1], data[:, 1:]


def test_schedule_by_hand():
    c = TrainConfig(max_steps=110, lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(60, c) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 50 / 99)))
    assert lr_at(109, c) == pytest.approx(0.1)
    after = [lr_at(s, c) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(after, after[1:]))  # never increases after warmup


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    trainer = Trainer(GPT(GPTConfig(**MODEL)), TrainConfig(max_steps=60, warmup_steps=5, eval_every=30),
                      counting_batches)
    h = trainer.fit(progress=False)
    assert h.eval_steps == [30, 60]
    assert h.eval_loss[-1] < 0.5 * math.log(40)  # far below a uniform guess
    assert len(h.train_loss) == 60 and max(h.grad_norm) > 0


def test_resume_gives_the_same_curve(tmp_path):
    config = TrainConfig(max_steps=20, warmup_steps=4, eval_every=5)
    torch.manual_seed(0)
    straight = Trainer(GPT(GPTConfig(**MODEL)), config, counting_batches)
    straight.fit(progress=False)

    torch.manual_seed(0)
    first = Trainer(GPT(GPTConfig(**MODEL)), config, counting_batches)
    first.fit(steps=10, progress=False)
    first.save(tmp_path / "ckpt.pt")
    resumed = Trainer.load(tmp_path / "ckpt.pt", GPT(GPTConfig(**MODEL)), counting_batches)
    resumed.fit(progress=False)
    assert resumed.history.train_loss == straight.history.train_loss
    assert resumed.history.eval_loss == straight.history.eval_loss
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)


def test_failures_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"warmup_steps must be an integer in \[0, 10\], got 20"):
        TrainConfig(max_steps=10, warmup_steps=20)
    with pytest.raises(ValueError, match=r"min_lr must be <= lr = 0.001 \(the cosine decays from lr to min_lr\), got 0.01"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    model = GPT(GPTConfig(**MODEL))
    with torch.no_grad():
        model.transformer.wte.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="the loss became nan at step 0"):
        Trainer(model, TrainConfig(max_steps=5, warmup_steps=1), counting_batches).fit(progress=False)
    trainer = Trainer(GPT(GPTConfig(**MODEL)), TrainConfig(max_steps=5, warmup_steps=1), counting_batches)
    trainer.save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="differs from the checkpoint"):
        Trainer.load(tmp_path / "c.pt", GPT(GPTConfig(**{**MODEL, "n_layer": 3})), counting_batches)


def test_a_one_process_group_changes_nothing(tmp_path):
    """Data-parallel only starts with 2+ processes: a group of one trains bit for bit as no group does."""
    import torch.distributed as dist

    from utils import distributed

    config = TrainConfig(max_steps=6, warmup_steps=2, eval_every=3)
    torch.manual_seed(0)
    alone = Trainer(GPT(GPTConfig(**MODEL)), config, counting_batches)
    alone.fit(progress=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert not distributed.is_distributed() and distributed.is_main()
        torch.manual_seed(0)
        grouped = Trainer(GPT(GPTConfig(**MODEL)), config, counting_batches)
        grouped.fit(progress=False)
        grouped.save(tmp_path / "c.pt")
    finally:
        dist.destroy_process_group()
    assert grouped.history == alone.history and (tmp_path / "c.pt").exists()
