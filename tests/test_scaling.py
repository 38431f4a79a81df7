"""Scaling-law fits (chapter 11): they recover known laws, and the stored sweep is consistent."""

import math

import pytest
import torch

from utils.model import GPT
from utils.scaling import (
    SWEEP,
    compute_optimal,
    eval_floor,
    fit_power_law,
    fit_scaling_law,
    load_sweep,
    predict,
    sweep_config,
    train_point,
)

TRUE = {"E": 0.55, "A": 30.0, "alpha": 0.4, "B": 200.0, "beta": 0.35}


def synthetic():
    N = torch.tensor([1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6], dtype=torch.float64)
    D = torch.tensor([1e4, 1e5, 1e6, 1e7], dtype=torch.float64)
    N, D = (t.flatten() for t in torch.meshgrid(N, D, indexing="ij"))
    return N, D, predict(TRUE, N, D)


def test_fit_recovers_a_known_law():
    N, D, L = synthetic()
    got = fit_scaling_law(N, D, L)
    for key, value in TRUE.items():
        assert got[key] == pytest.approx(value, rel=0.02), key
    with_floor = fit_scaling_law(N, D, L, fix_E=0.55)
    assert with_floor["E"] == 0.55 and with_floor["alpha"] == pytest.approx(0.4, rel=0.02)


def test_the_fit_objective_gradient_is_what_autograd_computes():
    from utils.scaling import _fit_objective, _huber

    g = torch.Generator().manual_seed(0)
    N, D = torch.logspace(3, 6, 12, dtype=torch.float64), torch.logspace(5, 8, 12, dtype=torch.float64)
    log_L = (0.5 + 300 * N ** -0.7 + 900 * D ** -0.4).log()
    for keys in (("N", "D"), ("N",), ("D",)):
        logs = {k: v.log() for k, v in zip(("N", "D"), (N, D)) if k in keys}
        for log_E in (None, torch.tensor(math.log(0.4), dtype=torch.float64)):
            theta = (torch.tensor([5.0, 0.6, 6.0, 0.5, -1.0], dtype=torch.float64)
                     + 0.3 * torch.randn(5, generator=g, dtype=torch.float64)).requires_grad_()
            for delta in (1e-3, 10.0):  # the absolute and the squared branch of the Huber loss
                loss, grad = _fit_objective(theta.detach(), logs, log_L, log_E, delta)
                a, alpha, b, beta, e = theta
                terms = [(log_E if log_E is not None else e).expand_as(log_L)]
                terms += [a - alpha * logs["N"]] if "N" in logs else []
                terms += [b - beta * logs["D"]] if "D" in logs else []
                want = _huber(torch.logsumexp(torch.stack(terms), 0) - log_L, delta).sum()
                (want_grad,) = torch.autograd.grad(want, theta)
                assert loss.item() == pytest.approx(want.item(), rel=1e-12)
                assert torch.allclose(grad, want_grad, rtol=1e-10, atol=1e-14), (keys, log_E, delta)
                assert grad.abs().sum() > 0


def test_fit_of_one_variable_and_the_log_log_line():
    N = torch.tensor([1e3, 1e4, 1e5, 1e6], dtype=torch.float64)
    L = 0.5 + 7.0 / N ** 0.3
    got = fit_scaling_law(N, None, L)
    assert set(got) == {"E", "A", "alpha", "objective"}
    assert got["alpha"] == pytest.approx(0.3, rel=0.02) and got["E"] == pytest.approx(0.5, rel=0.02)
    k, p = fit_power_law(N, 7.0 / N ** 0.3)
    assert k == pytest.approx(7.0) and p == pytest.approx(0.3)


def test_compute_optimal_is_the_minimum_along_an_isoflop_line():
    C = torch.tensor([1e12, 1e15])
    n_opt, d_opt = compute_optimal(TRUE, C)
    assert torch.allclose(6 * n_opt * d_opt, C.double())
    for c, n in zip(C.double(), n_opt):
        best = predict(TRUE, n, c / (6 * n))
        for factor in (0.8, 1.25):
            assert predict(TRUE, n * factor, c / (6 * n * factor)) > best


def test_bad_input():
    with pytest.raises(ValueError, match="at least 3 positive"):
        fit_scaling_law([1, 2, 3], None, [1.0, -1.0, 0.5])
    with pytest.raises(ValueError, match="N must be positive"):
        fit_scaling_law([1, 2], None, [1.0, 0.9, 0.8])
    with pytest.raises(ValueError, match="give N, D or both"):
        fit_scaling_law(None, None, [1.0, 0.9, 0.8])
    with pytest.raises(ValueError, match="fix_E must be"):
        fit_scaling_law([1, 2, 3], None, [1.0, 0.9, 0.8], fix_E=0.9)
    with pytest.raises(ValueError, match="multiple of 16"):
        sweep_config(24)


def test_a_sweep_point_counts_its_tokens():
    point = train_point(16, 3, batch_size=2)
    assert point["N"] == GPT(sweep_config(16)).num_params(non_embedding=True)
    assert point["C"] == 6 * point["N"] * point["D"] and 3 * 2 * 6 * 4 < point["D"] < 3 * 2 * 6 * 18
    assert math.isfinite(point["loss"]) and point["loss"] > 3  # 3 steps: still near log(512) = 6.2


def test_the_stored_sweep():
    sweep = load_sweep()
    points = sweep["points"]
    assert sweep["grid"] == SWEEP and len(points) == len(SWEEP["widths"]) * len(SWEEP["steps"]) + len(SWEEP["extra"])
    # no model beats the floor of the sentences it is evaluated on (the world's floor is an average)
    assert abs(eval_floor() - sweep["floor"]) < 0.01
    assert all(p["loss"] > eval_floor() for p in points)
    by = {(p["width"], p["steps"]): p["loss"] for p in points}
    widest, longest = max(SWEEP["widths"]), max(SWEEP["steps"])
    assert by[(widest, longest)] < by[(widest, min(SWEEP["steps"]))]
    assert by[(widest, longest)] < by[(min(SWEEP["widths"]), longest)]


def test_isoflop_lines_and_their_minimum():
    from utils.scaling import isoflop_groups, isoflop_minimum

    # points on a law with a known optimum: equal-compute diagonals (2w, s/4), a U-shape in log N
    points = []
    for w, s in [(8, 3200), (16, 800), (32, 200), (64, 50), (8, 800), (16, 200), (32, 50), (16, 50)]:
        n, d = 100 * w ** 2, 1000 * s
        loss = 1.0 + 0.05 * (math.log(n) - math.log(100 * 16 ** 2)) ** 2 + 1e-9 * d  # best at width 16
        points.append({"width": w, "steps": s, "N": n, "D": d, "C": 6 * n * d, "loss": loss})
    lines = isoflop_groups(points)
    assert [len(g) for g in lines] == [3, 4]  # the lone (16, 50) point is dropped
    assert all(g == sorted(g, key=lambda p: p["N"]) for g in lines)
    opt = isoflop_minimum(lines[1], floor=0.5)
    assert opt["fitted"] and 100 * 8 ** 2 < opt["N_opt"] < 100 * 32 ** 2
    assert opt["D_opt"] == pytest.approx(opt["C"] / (6 * opt["N_opt"]))
    rising = [dict(p, loss=1.0 + i) for i, p in enumerate(lines[1])]  # best at the smallest model: a bound
    edge = isoflop_minimum(rising, floor=0.5)
    assert not edge["fitted"] and edge["N_opt"] == rising[0]["N"]
    with pytest.raises(ValueError, match="above the floor"):
        isoflop_minimum(lines[1], floor=2.0)
    with pytest.raises(ValueError, match="at least 3"):
        isoflop_minimum(lines[1][:2], floor=0.5)


def test_the_command_line_writes_a_small_grid_where_asked(tmp_path, capsys):
    import json

    from utils.scaling import _main

    out = tmp_path / "sweep.json"
    assert _main(["--widths", "16", "--steps", "3", "--batch-size", "2", "--out", str(out)]) == 0
    sweep = json.loads(out.read_text(encoding="utf-8"))
    assert sweep["grid"] == {**SWEEP, "widths": [16], "steps": [3], "batch_size": 2, "extra": []}
    assert sweep["device"] == "cpu" and "world_size" not in sweep  # one process: the stored format
    assert [(p["width"], p["steps"]) for p in sweep["points"]] == [(16, 3)]
    assert "wrote" in capsys.readouterr().out
    # --missing-only trains only the points the file lacks, keeps the others as they are, and adds the new
    first = sweep["points"][0]
    assert _main(["--widths", "16", "--steps", "3", "4", "--batch-size", "2", "--missing-only", "--out", str(out)]) == 0
    grown = json.loads(out.read_text(encoding="utf-8"))
    assert [(p["width"], p["steps"]) for p in grown["points"]] == [(16, 3), (16, 4)]
    assert grown["points"][0] == first and grown["grid"]["steps"] == [3, 4]
    assert "steps     3" not in capsys.readouterr().out  # (16, 3) was not trained again
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        train_point(16, 3, batch_size=0)


def test_bootstrap_intervals_cover_a_known_law_with_noise():
    from utils.scaling import bootstrap_fit

    N, D, L = synthetic()
    noise = torch.randn(L.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noisy = L * torch.exp(0.01 * noise)
    points = [{"N": n, "D": d, "loss": x} for n, d, x in zip(N.tolist(), D.tolist(), noisy.tolist())]
    boot = bootstrap_fit(points, n=40, seed=0)
    assert len(boot["refits"]) >= 35
    for key in ("E", "alpha", "beta"):
        lo, hi = boot[key]
        assert lo < boot["fit"][key] < hi and lo < hi, key
        assert lo < TRUE[key] * 1.1 and hi > TRUE[key] * 0.9, key  # the truth is near the interval
    again = bootstrap_fit(points, n=40, seed=0)
    assert again["alpha"] == boot["alpha"]  # seeded
    with pytest.raises(ValueError, match="at least 5 points"):
        bootstrap_fit(points[:4])


def test_fact_recall_scores_a_model_that_knows_the_answers():
    from utils.long_tail import ZipfWorld
    from utils.pretraining import world_tokenizer
    from utils.scaling import RECALL_BANDS, fact_recall

    world, tok = ZipfWorld(seed=0, n_countries=40, n_people=20, exponent=1.5), world_tokenizer()
    model = GPT(sweep_config(16)).eval()
    bands = fact_recall(model, world, tok, bands=[(1, 10), (11, 40)])
    assert [b["ranks"] for b in bands] == [[1, 10], [11, 40]]
    for b in bands:  # an untrained model: about log(512) nats per token, no exact answers
        assert 5 < b["token_loss"] < 8 and b["exact"] == 0.0 and 0 <= b["token_accuracy"] < 0.1

    class Oracle(torch.nn.Module):  # puts all mass on the true next token of each row
        def __init__(self, rows):
            super().__init__()
            self.rows, self.w = rows, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.full((*x.shape, 512), -30.0)
            logits[:, :-1].scatter_(2, x[:, 1:, None], 30.0)
            return logits, None

    assert fact_recall(Oracle(None), world, tok, bands=[(1, 40)])[0]["exact"] == 1.0
    assert RECALL_BANDS[0] == (1, 10)


def test_a_zipf_point_records_recall_and_its_own_floor():
    from utils.scaling import ZIPF_SWEEP

    point = train_point(16, 3, batch_size=2, world=ZIPF_SWEEP["world"], eval_batches=2)
    assert [b["ranks"] for b in point["recall"]][0] == [1, 10] and point["loss"] > 3
    zipf_floor = eval_floor(2, 2, world=ZIPF_SWEEP["world"])
    assert 0.3 < zipf_floor < 0.6 and abs(zipf_floor - eval_floor(2, 2)) > 0.01  # not the uniform world's


@pytest.mark.parametrize("name, grid", [("scaling_zipf.json", "ZIPF_SWEEP"), ("scaling_zipf_flat.json", "ZIPF_FLAT_SWEEP")])
def test_the_stored_zipf_sweeps(name, grid):
    import utils.scaling as scaling

    sweep, grid = load_sweep(name), getattr(scaling, grid)
    points = sweep["points"]
    assert sweep["grid"] == grid and len(points) == len(grid["widths"]) * len(grid["steps"]) + len(grid["extra"])
    floor = eval_floor(grid["eval_batches"], grid["batch_size"], world=grid["world"])
    assert floor == pytest.approx(sweep["eval_floor"], abs=1e-9)  # the stored floor is these sentences'
    assert all(p["loss"] > floor for p in points)  # no model beats the floor of what it is scored on
    for p in points:  # every point recorded recall, band by band, with sane values
        assert [tuple(b["ranks"]) for b in p["recall"]] == scaling.RECALL_BANDS
        assert all(0 <= b["exact"] <= 1 and 0 <= b["token_accuracy"] <= 1 and b["token_loss"] > 0 for b in p["recall"])
    by = {(p["width"], p["steps"]): p for p in points}
    widest, longest = max(grid["widths"]), max(grid["steps"])
    assert by[(widest, longest)]["loss"] < by[(widest, min(grid["steps"]))]["loss"]
    assert by[(widest, longest)]["loss"] < by[(min(grid["widths"]), longest)]["loss"]
