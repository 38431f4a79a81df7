"""Scaling laws measured on the tiny world: a sweep of models x token budgets, and the fits (chapter 11).

    python -m utils.scaling              # the CPU sweep (about 14 minutes): writes utils/data/scaling_sweep.json
    python -m utils.scaling --big        # more sizes and budgets, for a GPU
    python -m utils.scaling --check      # retrain one stored point and compare

Every point trains a fresh 2-layer GPT of width w for s steps with chapter 8's recipe (AdamW,
warmup, cosine decay to 10%, each run's schedule sized to its own length, as Hoffmann et al. do),
and records the non-embedding parameter count N, the tokens seen D (targets that carry loss) and
the validation loss L. Chapter 11 fits to these points

    L(N)    = E + A / N^alpha            (the budget fixed at its largest)
    L(D)    = E + B / D^beta             (the size fixed at its largest)
    L(N, D) = E + A / N^alpha + B / D^beta      (Hoffmann et al., 2022, eq. 2)

with L-BFGS on a Huber loss of log-losses, as Hoffmann et al. (2022, Appendix D.2) do, and
compares E with the world's exact entropy floor.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .model import GPT, GPTConfig
from .pretraining import SMALL_SENTENCES_PER_ROW, SMALL_TRAIN, WORLD_VOCAB_SIZE, WorldBatches, world_tokenizer
from .tiny_world import World
from .train import Trainer

__all__ = ["SWEEP", "BIG_SWEEP", "eval_floor", "sweep_config", "train_point", "run_sweep", "load_sweep", "fit_scaling_law",
           "fit_power_law", "predict", "compute_optimal", "isoflop_groups", "isoflop_minimum", "PUBLISHED"]

#: The CPU sweep: every width x every budget, plus longer runs of the small models ("extra"), so that
#: each isoFLOP line (equal C = 6ND) holds both a small model trained long and a big one trained short.
SWEEP = {"widths": [16, 32, 64, 128], "steps": [50, 100, 200, 400, 800], "batch_size": 16, "n_layer": 2,
         "extra": [[16, 1600], [16, 3200], [16, 6400], [32, 1600], [32, 3200],
                   [8, 400], [8, 800], [8, 1600], [8, 3200], [8, 6400], [8, 12800], [16, 12800]]}
BIG_SWEEP = {"widths": [16, 32, 64, 128, 256, 384], "steps": [50, 100, 200, 400, 800, 1600, 3200],
             "batch_size": 32, "n_layer": 4, "extra": [[16, 6400], [32, 6400], [64, 6400]]}
SWEEP_FILE = "scaling_sweep.json"
#: Published fits, for comparison (Kaplan et al., 2020, eqs. 1.1-1.2; Hoffmann et al., 2022, eq. 10).
PUBLISHED = {
    "kaplan": {"alpha_N": 0.076, "alpha_D": 0.095},
    "hoffmann": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28, "tokens_per_parameter": 20},
}


def sweep_config(width: int, n_layer: int = 2) -> GPTConfig:
    """The model of one sweep point: chapter 8's small model with another width (up to 4 heads of size >= 16;
    width 8 has one head of size 8)."""
    if width < 8 or width % 8 or (width > 16 and width % 16):
        raise ValueError(f"width must be 8 or a multiple of 16, got {width}")
    return GPTConfig(block_size=128, vocab_size=WORLD_VOCAB_SIZE, n_layer=n_layer, n_head=max(1, min(4, width // 16)),
                     n_embd=width)


def train_point(width: int, steps: int, batch_size: int = 16, n_layer: int = 2, seed: int = 0,
                device: str = "cpu") -> dict:
    """Train one sweep point from scratch; returns N, D, C = 6ND, the validation loss and the time."""
    world, tok = World(seed=0), world_tokenizer()
    data = WorldBatches(world, tok, SMALL_SENTENCES_PER_ROW, batch_size, seed=seed)
    config = replace(SMALL_TRAIN, max_steps=steps, warmup_steps=max(1, steps // 10), eval_every=steps,
                     eval_batches=8)
    torch.manual_seed(seed)
    model = GPT(sweep_config(width, n_layer))
    tokens = sum(int((data.get_batch("train", s)[1] != -100).sum()) for s in range(steps))
    start = time.perf_counter()
    history = Trainer(model, config, data.get_batch, device=device).fit(progress=False)
    n = model.num_params(non_embedding=True)
    return {"width": width, "steps": steps, "N": n, "D": tokens, "C": 6 * n * tokens,
            "loss": round(history.eval_loss[-1], 5), "seconds": round(time.perf_counter() - start, 1)}


def run_sweep(grid: dict = SWEEP, device: str = "cpu", verbose: bool = True) -> dict:
    """Train every (width, steps) point of ``grid``; returns the results with their settings."""
    world, tok = World(seed=0), world_tokenizer()
    start = time.perf_counter()
    points = []
    pairs = list(itertools.product(grid["widths"], grid["steps"])) + [tuple(p) for p in grid.get("extra", [])]
    for width, steps in pairs:
        points.append(train_point(width, steps, grid["batch_size"], grid["n_layer"], device=device))
        p = points[-1]
        if verbose:
            print(f"width {width:>4}  steps {steps:>5}  N {p['N']:>9,}  D {p['D']:>10,}  loss {p['loss']:.4f}  "
                  f"({p['seconds']} s)", flush=True)
    return {"grid": grid, "floor": world.entropy_per_token(tok.encode_ordinary), "eval_floor": eval_floor(
        batch_size=grid["batch_size"]), "torch": torch.__version__,
            "device": device, "train_config": asdict(SMALL_TRAIN), "seconds": round(time.perf_counter() - start),
            "points": points}


def eval_floor(eval_batches: int = 8, batch_size: int = SWEEP["batch_size"], seed: int = 0) -> float:
    """The entropy floor of the exact validation sentences the sweep evaluates on.

    The world's floor (``World.entropy_per_token``) is an average over all possible text; the
    validation loss averages over 8 batches of sampled sentences, which can be a little easier
    or harder than average. Their own floor is sum(-ln p(sentence)) / (tokens that carry loss),
    batch by batch, averaged as ``Trainer.evaluate`` averages. No model can score below it.
    """
    world, tok = World(seed=0), world_tokenizer()
    data = WorldBatches(world, tok, SMALL_SENTENCES_PER_ROW, batch_size, seed=seed)
    probs = dict(world.all_sentences())
    floors = []
    for i in range(eval_batches):
        rng = random.Random(data.seed * 1_000_003 + data.SEEDS["val"] * 7_919_993 + i)  # as get_batch draws
        sentences = [world.sample_sentence(rng) for _ in range(SMALL_SENTENCES_PER_ROW * batch_size)]
        y = data.get_batch("val", i)[1]
        tokens = int((y != -100).sum())
        if tokens != sum(len(tok.encode_ordinary(s + "\n")) for s in sentences):
            raise RuntimeError("WorldBatches no longer draws sentences as eval_floor assumes")
        floors.append(sum(-math.log(probs[s]) for s in sentences) / tokens)
    return sum(floors) / len(floors)


def load_sweep(path: str | Path | None = None) -> dict:
    """The stored sweep (or the one at ``path``)."""
    path = Path(path) if path else Path(__file__).resolve().parent / "data" / SWEEP_FILE
    return json.loads(Path(path).read_text(encoding="utf-8"))


# -- fits ------------------------------------------------------------------------------------------
def _huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.where(x.abs() <= delta, 0.5 * x ** 2, delta * (x.abs() - 0.5 * delta))


def predict(params: dict, N=None, D=None):
    """E + A / N^alpha + B / D^beta, leaving out the terms whose argument is None."""
    out = params["E"]
    if N is not None:
        out = out + params["A"] / N ** params["alpha"]
    if D is not None:
        out = out + params["B"] / D ** params["beta"]
    return out


def fit_scaling_law(N, D, L, delta: float = 1e-3, fix_E: float | None = None) -> dict:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al., 2022, eq. 2) to measured points.

    As in their Appendix D.2: minimise the Huber loss (delta = 1e-3) between log L and the log of
    the prediction, written as LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b,
    E = e^e, with L-BFGS from a grid of starting points, keeping the best. ``N`` or ``D`` may be
    None to fit one variable only (then that term is left out). ``fix_E`` holds E fixed.
    """
    L = torch.as_tensor(L, dtype=torch.float64)
    if L.numel() < 3 or bool((L <= 0).any()):
        raise ValueError(f"need at least 3 positive losses, got {L.tolist()}")
    logs = {}
    for name, values in (("N", N), ("D", D)):
        if values is not None:
            v = torch.as_tensor(values, dtype=torch.float64)
            if v.shape != L.shape or bool((v <= 0).any()):
                raise ValueError(f"{name} must be positive with the shape of L {tuple(L.shape)}, got {v.tolist()}")
            logs[name] = v.log()
    if not logs:
        raise ValueError("give N, D or both")
    if fix_E is not None and not 0 < fix_E < float(L.min()):
        raise ValueError(f"fix_E must be in (0, min L = {float(L.min()):.4f}), got {fix_E}")
    best = None
    starts = itertools.product([0.0, 10.0], [0.2, 0.8], [0.0, 10.0], [0.2, 0.8],
                               [-1.0, 0.0] if fix_E is None else [math.log(fix_E)])
    seen = set()
    for a0, al0, b0, be0, e0 in starts:
        key = (a0 if "N" in logs else 0, al0 if "N" in logs else 0, b0 if "D" in logs else 0,
               be0 if "D" in logs else 0, e0)
        if key in seen:
            continue
        seen.add(key)
        theta = torch.tensor([a0, al0, b0, be0, e0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def objective(opt=opt, theta=theta):
            opt.zero_grad()
            a, alpha, b, beta, e = theta
            e = torch.tensor(math.log(fix_E), dtype=torch.float64) if fix_E is not None else e
            terms = [e.expand_as(L)]
            if "N" in logs:
                terms.append(a - alpha * logs["N"])
            if "D" in logs:
                terms.append(b - beta * logs["D"])
            loss = _huber(torch.logsumexp(torch.stack(terms), dim=0) - L.log(), delta).sum()
            loss.backward()
            return loss

        try:
            opt.step(objective)
            value = objective().item()
        except RuntimeError:
            continue
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, theta.detach().clone())
    if best is None:
        raise RuntimeError("no starting point converged")
    a, alpha, b, beta, e = best[1].tolist()
    params = {"E": fix_E if fix_E is not None else math.exp(e), "objective": best[0]}
    if "N" in logs:
        params.update(A=math.exp(a), alpha=alpha)
    if "D" in logs:
        params.update(B=math.exp(b), beta=beta)
    return params


def fit_power_law(x, y) -> tuple[float, float]:
    """Least squares of log y = log k - p log x: returns (k, p) for y = k x^-p."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.numel() < 2 or x.shape != y.shape or bool((x <= 0).any()) or bool((y <= 0).any()):
        raise ValueError("x and y must be positive, of the same shape, with at least 2 points")
    X = torch.stack([torch.ones_like(x), -x.log()], dim=1)
    coef = torch.linalg.lstsq(X, y.log().unsqueeze(1)).solution.flatten()
    return math.exp(coef[0].item()), coef[1].item()


def isoflop_groups(points: list[dict], min_points: int = 3) -> list[list[dict]]:
    """The sweep's points grouped into isoFLOP lines, each sorted by N.

    Doubling the width multiplies N by about 4, and a quarter of the steps divides D by 4, so
    points (w, s), (2w, s/4), (4w, s/16) ... spend about the same compute C = 6ND (within a few
    per cent). Points are grouped by log2(width) * 2 + log2(steps); groups with fewer than
    ``min_points`` points are dropped. Groups come in order of increasing compute.
    """
    groups: dict[int, list[dict]] = {}
    for p in points:
        key = round(2 * math.log2(p["width"]) + math.log2(p["steps"]))
        groups.setdefault(key, []).append(p)
    out = [sorted(g, key=lambda p: p["N"]) for _, g in sorted(groups.items()) if len(g) >= min_points]
    return out


def isoflop_minimum(group: list[dict], floor: float) -> dict:
    """The compute-optimal model size along one isoFLOP line, in the spirit of Hoffmann et al. (2022),
    Approach 2: fit a parabola in log N through the best measured point and its two neighbours, and
    take its vertex. We fit log(L - floor), the loss a model can still lose, rather than L: near the
    floor every L is flat and a parabola in L has no clear minimum. Returns C (the line's mean
    compute), N_opt, D_opt = C / (6 N_opt) and the three points used. If the best point is at the
    end of the line, or the parabola opens downwards, N_opt is the best measured N (``fitted`` False).
    """
    if len(group) < 3:
        raise ValueError(f"a parabola needs at least 3 points, got {len(group)}")
    if any(p["loss"] <= floor for p in group):
        raise ValueError(f"every loss must be above the floor {floor}")
    C = sum(p["C"] for p in group) / len(group)
    i = min(range(len(group)), key=lambda k: group[k]["loss"])
    local = group[max(0, min(i - 1, len(group) - 3)):][:3]
    x = torch.tensor([math.log(p["N"]) for p in local], dtype=torch.float64)
    y = torch.tensor([math.log(p["loss"] - floor) for p in local], dtype=torch.float64)
    X = torch.stack([x ** 2, x, torch.ones_like(x)], dim=1)
    a, b, _ = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.flatten().tolist()
    fitted = 0 < i < len(group) - 1 and a > 0
    n_opt = math.exp(-b / (2 * a)) if fitted else group[i]["N"]
    return {"C": C, "N_opt": n_opt, "D_opt": C / (6 * n_opt), "fitted": fitted, "used": local}


def compute_optimal(params: dict, C) -> tuple:
    """(N_opt, D_opt) minimising E + A/N^alpha + B/D^beta under C = 6 N D (Hoffmann et al., 2022, eq. 4)."""
    alpha, beta, A, B = params["alpha"], params["beta"], params["A"], params["B"]
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    C = torch.as_tensor(C, dtype=torch.float64)
    n_opt = G * (C / 6) ** (beta / (alpha + beta))
    return n_opt, C / (6 * n_opt)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", action="store_true", help="the bigger grid (use a GPU)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / SWEEP_FILE)
    parser.add_argument("--check", action="store_true", help="retrain the smallest stored point and compare")
    parser.add_argument("--extra-only", action="store_true",
                        help="train only the grid's extra points and add them to the stored file")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.check:
        stored = load_sweep(args.out)
        point = stored["points"][0]
        again = train_point(point["width"], point["steps"], stored["grid"]["batch_size"], stored["grid"]["n_layer"])
        print(f"stored loss {point['loss']:.5f}, retrained {again['loss']:.5f}")
        return 0 if abs(again["loss"] - point["loss"]) < 1e-3 else 1
    from .device import get_device

    device = "cpu" if not args.big else get_device().type
    grid = BIG_SWEEP if args.big else SWEEP
    if args.extra_only:
        stored = load_sweep(args.out)
        done = {(p["width"], p["steps"]) for p in stored["points"]}
        todo = [p for p in grid["extra"] if tuple(p) not in done]
        more = run_sweep({**grid, "widths": [], "steps": [], "extra": todo}, device=device)
        stored["points"] += more["points"]
        stored["grid"], stored["seconds"] = grid, stored["seconds"] + more["seconds"]
        result = stored
    else:
        result = run_sweep(grid, device=device)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
