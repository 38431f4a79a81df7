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
