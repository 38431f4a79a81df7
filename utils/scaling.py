"""Scaling laws measured on the tiny worlds: sweeps of models x token budgets, and the fits (chapter 11).

    python -m utils.scaling --zipf --jobs 2       # chapter 11's long-tailed sweep: utils/data/scaling_zipf.json
                                                  # (1 to 1.5 hours with 2 processes on an idle 2-core CPU)
    python -m utils.scaling --zipf-flat --jobs 2  # the flatter tail: scaling_zipf_flat.json (22 minutes)
    python -m utils.scaling              # chapter 8's uniform world (about 14 minutes): scaling_sweep.json
    python -m utils.scaling --big        # more sizes and budgets, for a GPU
    python -m utils.scaling --check      # retrain one stored point and compare (with --zipf: of that sweep)

Data-parallel (``utils.distributed``): under ``torchrun`` every point trains on all the processes
at once, each taking its share of the same global batch (the curve is one process's, up to float
rounding), and only rank 0 prints and writes the file. One command per setting:

    python -m utils.scaling --big                                           # one GPU
    torchrun --standalone --nproc_per_node=N -m utils.scaling --big         # N GPUs on one machine
    torchrun --nnodes=M --nproc_per_node=N --rdzv_id=sweep --rdzv_backend=c10d \
             --rdzv_endpoint=HOST:PORT -m utils.scaling --big               # on each of M machines
    torchrun --standalone --nproc_per_node=2 -m utils.scaling --widths 16 --steps 20 \
             --out /tmp/sweep.json                                          # 2 CPU processes (gloo)

``--widths``, ``--steps``, ``--batch-size`` and ``--n-layer`` replace parts of the grid (a small
grid for a try-out; ``--widths``/``--steps`` drop the grid's extra points). ``--out`` writes
somewhere else than the stored file; ``--missing-only`` trains only the grid's points that the file
lacks and adds them (how the long runs joined the stored sweeps). The global batch must be a
multiple of the process count.

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

from . import distributed
from .model import GPT, GPTConfig
from .pretraining import SMALL_SENTENCES_PER_ROW, SMALL_TRAIN, WORLD_VOCAB_SIZE, WorldBatches, world_tokenizer
from .tiny_world import World
from .train import Trainer

__all__ = ["SWEEP", "ZIPF_SWEEP", "ZIPF_FLAT_SWEEP", "BIG_SWEEP", "sweep_world", "fact_recall", "ZIPF_FILE",
           "ZIPF_FLAT_FILE", "RECALL_BANDS", "eval_floor", "sweep_config", "train_point", "run_sweep", "load_sweep",
           "fit_scaling_law", "fit_power_law", "bootstrap_fit", "predict", "compute_optimal", "isoflop_groups",
           "isoflop_minimum", "PUBLISHED"]

#: The CPU sweep: every width x every budget, plus longer runs of the small models ("extra"), so that
#: each isoFLOP line (equal C = 6ND) holds both a small model trained long and a big one trained short.
SWEEP = {"widths": [16, 32, 64, 128], "steps": [50, 100, 200, 400, 800], "batch_size": 16, "n_layer": 2,
         "extra": [[16, 1600], [16, 3200], [16, 6400], [32, 1600], [32, 3200],
                   [8, 400], [8, 800], [8, 1600], [8, 3200], [8, 6400], [8, 12800], [16, 12800]]}
#: The long-tailed sweep chapter 11 fits (``utils.long_tail.ZipfWorld``): subjects with Zipf
#: frequencies, so each decade of size or data reaches further into the tail. The extra points
#: train every width long (to 25,600 steps): isoFLOP lines then reach past their minimum on both
#: sides, L(N) is measured with more data, and some runs come within a few per cent of the floor,
#: which a fit needs to find it (chapter 11, section 11.5).
ZIPF_SWEEP = {"world": {"n_countries": 1000, "n_people": 4000, "exponent": 1.5},
              "widths": [8, 16, 32, 64, 128], "steps": [100, 200, 400, 800, 1600, 3200], "batch_size": 16,
              "n_layer": 2, "eval_batches": 32,
              "extra": [[8, 6400], [8, 12800], [16, 6400], [16, 12800], [32, 6400],
                        [32, 12800], [64, 6400], [64, 12800], [128, 6400], [128, 12800],
                        [8, 25600], [16, 25600], [32, 25600], [64, 25600], [128, 25600]]}
#: The same sweep, smaller (no 100-step runs, fewer long ones), on a flatter tail (exponent 1.2):
#: how the exponent moves the fits.
ZIPF_FLAT_SWEEP = {**ZIPF_SWEEP, "world": {**ZIPF_SWEEP["world"], "exponent": 1.2},
                   "widths": [8, 16, 32, 64, 128], "steps": [200, 400, 800, 1600, 3200],
                   "extra": [[8, 6400], [8, 12800], [16, 6400], [16, 12800], [32, 6400]]}
BIG_SWEEP = {"widths": [16, 32, 64, 128, 256, 384], "steps": [50, 100, 200, 400, 800, 1600, 3200],
             "batch_size": 32, "n_layer": 4, "extra": [[16, 6400], [32, 6400], [64, 6400]]}
SWEEP_FILE = "scaling_sweep.json"
ZIPF_FILE, ZIPF_FLAT_FILE = "scaling_zipf.json", "scaling_zipf_flat.json"
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


def sweep_world(world: dict | None = None) -> World:
    """The world a sweep trains on: ``World(seed=0)``, or a ``ZipfWorld`` with the settings ``world``."""
    if world is None:
        return World(seed=0)
    from .long_tail import ZipfWorld

    return ZipfWorld(seed=0, **world)


def train_point(width: int, steps: int, batch_size: int = 16, n_layer: int = 2, seed: int = 0,
                device: str = "cpu", world: dict | None = None, eval_batches: int = 8) -> dict:
    """Train one sweep point from scratch; returns N, D, C = 6ND, the validation loss and the time.

    ``world`` (None: chapter 8's ``World``) gives ``ZipfWorld``'s settings; then the point also
    records ``fact_recall`` of the trained model. Under torchrun the point trains data-parallel
    over all processes; ``batch_size`` is the global batch and must be a multiple of their
    number; ``device`` is this process's (e.g. "cuda:1").
    """
    distributed.check_global_batch(batch_size)
    the_world, tok = sweep_world(world), world_tokenizer()
    data = WorldBatches(the_world, tok, SMALL_SENTENCES_PER_ROW, batch_size, seed=seed)
    config = replace(SMALL_TRAIN, max_steps=steps, warmup_steps=max(1, steps // 10), eval_every=steps,
                     eval_batches=eval_batches)
    torch.manual_seed(seed)
    model = GPT(sweep_config(width, n_layer)).to(device)
    tokens = sum(int((data.get_batch("train", s)[1] != -100).sum()) for s in range(steps))
    start = time.perf_counter()
    history = Trainer(model, config, data.get_batch, device=device).fit(progress=False)
    n = model.num_params(non_embedding=True)
    point = {"width": width, "steps": steps, "N": n, "D": tokens, "C": 6 * n * tokens,
             "loss": round(history.eval_loss[-1], 5), "seconds": round(time.perf_counter() - start, 1)}
    if world is not None:
        point["recall"] = fact_recall(model, the_world, tok)
    return point


#: Frequency bands of countries for ``fact_recall``: ranks 1-10, 11-30, ... (1 = most common).
RECALL_BANDS = [(1, 10), (11, 30), (31, 100), (101, 300), (301, 1000)]


@torch.no_grad()
def fact_recall(model: GPT, world: World, tokenizer, bands=RECALL_BANDS) -> list[dict]:
    """How well ``model`` completes "The capital of <country> is" with the right capital, by band.

    For every country the answer is " <capital>." (several tokens). Per band of frequency ranks:
    ``token_loss``, the mean loss per answer token (nats); ``token_accuracy``, the share of answer
    tokens that are the model's top choice given the true tokens before them; ``exact``, the share
    of countries whose whole answer is the top choice at every token, which is exactly when greedy
    decoding writes the right capital. Exact match is the product-like metric of Schaeffer et al.
    (2023); the per-token numbers are the smooth ones.
    """
    model.eval()
    device = next(model.parameters()).device
    bos = tokenizer.special_tokens["<|endoftext|>"]
    countries = world.subjects("country")
    rows = []
    for country in countries:
        prompt = tokenizer.encode_ordinary(f"The capital of {country} is")
        answer = tokenizer.encode_ordinary(f" {world.countries[country]['capital']}.")
        rows.append(([bos] + prompt, answer))
    out = []
    width = max(len(p) + len(a) for p, a in rows)
    x = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        x[i, :len(p) + len(a)] = torch.tensor(p + a)
    logits = torch.cat([model(x[i:i + 256].to(device))[0].float().cpu() for i in range(0, len(rows), 256)])
    logp = logits.log_softmax(-1)
    per_country = []
    for i, (p, a) in enumerate(rows):
        positions = torch.arange(len(p) - 1, len(p) + len(a) - 1)
        target = torch.tensor(a)
        lp = logp[i, positions, target]
        hit = logp[i, positions].argmax(-1) == target
        per_country.append((-lp.sum().item(), len(a), int(hit.sum()), bool(hit.all())))
    for lo, hi in bands:
        chunk = per_country[lo - 1:min(hi, len(countries))]
        if not chunk:
            continue
        tokens = sum(c[1] for c in chunk)
        out.append({"ranks": [lo, hi], "token_loss": round(sum(c[0] for c in chunk) / tokens, 5),
                    "token_accuracy": round(sum(c[2] for c in chunk) / tokens, 5),
                    "exact": round(sum(c[3] for c in chunk) / len(chunk), 5)})
    return out


def _pairs(grid: dict) -> list[tuple[int, int]]:
    return list(itertools.product(grid["widths"], grid["steps"])) + [tuple(p) for p in grid.get("extra", [])]


def _train_pair(args: tuple) -> dict:
    """One point in a worker process (``run_sweep(jobs=...)``), on one CPU thread."""
    torch.set_num_threads(1)
    return train_point(*args)


def run_sweep(grid: dict = SWEEP, device: str = "cpu", verbose: bool = True, jobs: int = 1) -> dict:
    """Train every (width, steps) point of ``grid``; returns the results with their settings.

    ``jobs`` > 1 trains that many points at once in separate CPU processes of one thread each
    (every point is seeded on its own, so the points do not depend on ``jobs`` beyond float
    rounding); it cannot be combined with torchrun or a GPU.
    """
    world_settings, eval_batches = grid.get("world"), grid.get("eval_batches", 8)
    world, tok = sweep_world(world_settings), world_tokenizer()
    start = time.perf_counter()
    args = [(w, s, grid["batch_size"], grid["n_layer"], 0, device, world_settings, eval_batches)
            for w, s in _pairs(grid)]

    def report(p):
        if verbose and distributed.is_main():
            print(f"width {p['width']:>4}  steps {p['steps']:>5}  N {p['N']:>9,}  D {p['D']:>10,}  "
                  f"loss {p['loss']:.4f}  ({p['seconds']} s)", flush=True)

    if jobs > 1:
        if device != "cpu" or distributed.world_size() > 1:
            raise ValueError(f"jobs > 1 runs CPU processes; got jobs={jobs} with device {device!r} under "
                             f"{distributed.world_size()} torchrun processes")
        import concurrent.futures
        import multiprocessing

        order = sorted(range(len(args)), key=lambda i: -args[i][1] * (1 + args[i][0] / 32))  # longest first
        points: list = [None] * len(args)
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_pair, args[i]): i for i in order}
            for future in concurrent.futures.as_completed(futures):
                points[futures[future]] = future.result()
                report(points[futures[future]])
    else:
        points = []
        for a in args:
            points.append(train_point(*a))
            report(points[-1])
    result = {"grid": grid, "floor": world.entropy_per_token(tok.encode_ordinary),
              "eval_floor": eval_floor(eval_batches, grid["batch_size"], world=world_settings),
              "torch": torch.__version__, "device": device, "jobs": jobs, "train_config": asdict(SMALL_TRAIN),
              "seconds": round(time.perf_counter() - start), "points": points}
    if distributed.world_size() > 1:  # data-parallel: the kind of device ("cuda", not "cuda:1") and how many
        result.update(device=torch.device(device).type, world_size=distributed.world_size())
    return result


def eval_floor(eval_batches: int = 8, batch_size: int = SWEEP["batch_size"], seed: int = 0,
               world: dict | None = None) -> float:
    """The entropy floor of the exact validation sentences the sweep evaluates on.

    The world's floor (``World.entropy_per_token``) is an average over all possible text; the
    validation loss averages over ``eval_batches`` batches of sampled sentences, which can be a
    little easier or harder than average. Their own floor is sum(-ln p(sentence)) / (tokens that
    carry loss), batch by batch, averaged as ``Trainer.evaluate`` averages. No model can score
    below it. ``world`` is the sweep's world settings (None: ``World(seed=0)``).
    """
    the_world, tok = sweep_world(world), world_tokenizer()
    data = WorldBatches(the_world, tok, SMALL_SENTENCES_PER_ROW, batch_size, seed=seed)
    probs = dict(the_world.all_sentences())
    floors = []
    for i in range(eval_batches):
        rng = random.Random(data.seed * 1_000_003 + data.SEEDS["val"] * 7_919_993 + i)  # as get_batch draws
        sentences = [the_world.sample_sentence(rng) for _ in range(SMALL_SENTENCES_PER_ROW * batch_size)]
        y = data.get_batch("val", i)[1]
        tokens = int((y != -100).sum())
        if tokens != sum(len(tok.encode_ordinary(s + "\n")) for s in sentences):
            raise RuntimeError("WorldBatches no longer draws sentences as eval_floor assumes")
        floors.append(sum(-math.log(probs[s]) for s in sentences) / tokens)
    return sum(floors) / len(floors)


def load_sweep(path: str | Path | None = None) -> dict:
    """The stored sweep: ``SWEEP_FILE`` by default; a bare file name (``ZIPF_FILE``) is looked up in
    ``utils/data``; any other path is read as it is."""
    data = Path(__file__).resolve().parent / "data"
    path = Path(path) if path else data / SWEEP_FILE
    if path.name == str(path) and not path.exists():
        path = data / path
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


def _fit_objective(theta: torch.Tensor, logs: dict, log_L: torch.Tensor, log_E, delta: float):
    """The fit's objective and its gradient in theta = (a, alpha, b, beta, e).

    The sum of Huber losses between log L and LSE(e, a - alpha log N, b - beta log D), with the
    gradient written out (the derivative of logsumexp is softmax): what autograd computes
    (tested), at a fraction of its overhead on these tiny tensors. ``log_E`` (a tensor) holds e
    fixed; ``logs`` has "N", "D" or both.
    """
    a, alpha, b, beta, e = theta
    terms = [(log_E if log_E is not None else e).expand_as(log_L)]
    terms += [a - alpha * logs["N"]] if "N" in logs else []
    terms += [b - beta * logs["D"]] if "D" in logs else []
    stacked = torch.stack(terms)
    r = torch.logsumexp(stacked, dim=0) - log_L
    small = r.abs() <= delta
    loss = _huber(r, delta).sum()
    w = torch.softmax(stacked, dim=0) * torch.where(small, r, delta * r.sign())
    grad = torch.zeros(5, dtype=torch.float64)
    if log_E is None:
        grad[4] = w[0].sum()
    for row, (key, i) in zip(w[1:], [(k, i) for k, i in (("N", 0), ("D", 2)) if k in logs]):
        grad[i], grad[i + 1] = row.sum(), -(row * logs[key]).sum()
    return loss, grad


def fit_scaling_law(N, D, L, delta: float = 1e-3, fix_E: float | None = None, start: dict | None = None) -> dict:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al., 2022, eq. 2) to measured points.

    As in their Appendix D.2: minimise the Huber loss (delta = 1e-3) between log L and the log of
    the prediction, written as LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b,
    E = e^e, with L-BFGS (a history of 10 steps, scipy's default) from a grid of starting points,
    keeping the best. ``N`` or ``D`` may be None to fit one variable only (then that term is left
    out). ``fix_E`` holds E fixed.
    ``start`` (a fit's result) replaces the grid by that one starting point: much faster, for
    refitting resampled points (``bootstrap_fit``).
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
    log_L = L.log()
    log_E = torch.tensor(math.log(fix_E), dtype=torch.float64) if fix_E is not None else None
    starts = itertools.product([0.0, 10.0], [0.2, 0.8], [0.0, 10.0], [0.2, 0.8],
                               [-1.0, 0.0] if fix_E is None else [math.log(fix_E)])
    if start is not None:
        starts = [(math.log(start.get("A", 1.0)), start.get("alpha", 0.5), math.log(start.get("B", 1.0)),
                   start.get("beta", 0.5), math.log(fix_E if fix_E is not None else start["E"]))]
    seen = set()
    for a0, al0, b0, be0, e0 in starts:
        key = (a0 if "N" in logs else 0, al0 if "N" in logs else 0, b0 if "D" in logs else 0,
               be0 if "D" in logs else 0, e0)
        if key in seen:
            continue
        seen.add(key)
        theta = torch.tensor([a0, al0, b0, be0, e0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=200, history_size=10, line_search_fn="strong_wolfe")

        def objective(theta=theta):
            loss, theta.grad = _fit_objective(theta.detach(), logs, log_L, log_E, delta)
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


def bootstrap_fit(points: list[dict], n: int = 200, seed: int = 0, fix_E: float | None = None) -> dict:
    """Bootstrap intervals for the joint fit: refit L(N, D) to ``n`` resamples of ``points``.

    Each resample draws len(points) points with replacement (seeded) and is refitted from the
    fit to all points. Returns the full fit and, for E, alpha, beta, the 2.5th and 97.5th
    percentiles of the refits (a 95% interval) and the refits themselves. ``fix_E`` holds E
    fixed in every fit (for a known floor).
    """
    if len(points) < 5:
        raise ValueError(f"need at least 5 points to bootstrap, got {len(points)}")
    full = fit_scaling_law([p["N"] for p in points], [p["D"] for p in points], [p["loss"] for p in points],
                           fix_E=fix_E)
    g = torch.Generator().manual_seed(seed)
    refits = []
    for _ in range(n):
        idx = torch.randint(0, len(points), (len(points),), generator=g).tolist()
        sample = [points[i] for i in idx]
        try:
            refits.append(fit_scaling_law([p["N"] for p in sample], [p["D"] for p in sample],
                                          [p["loss"] for p in sample], fix_E=fix_E, start=full))
        except RuntimeError:
            continue
    out = {"fit": full, "refits": refits}
    for key in ("E", "alpha", "beta"):
        values = torch.tensor([r[key] for r in refits], dtype=torch.float64)
        out[key] = (torch.quantile(values, 0.025).item(), torch.quantile(values, 0.975).item())
    return out


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
    parser.add_argument("--zipf", action="store_true", help="the long-tailed sweep of chapter 11 (ZIPF_SWEEP)")
    parser.add_argument("--zipf-flat", action="store_true", help="the smaller sweep on a flatter tail")
    parser.add_argument("--jobs", type=int, default=1, help="points trained at once in CPU processes")
    parser.add_argument("--out", type=Path, help="where to write (default: the stored file in utils/data)")
    parser.add_argument("--check", action="store_true", help="retrain the smallest stored point and compare")
    parser.add_argument("--missing-only", action="store_true",
                        help="train only the grid's points that the stored file lacks, and add them to it")
    parser.add_argument("--widths", type=int, nargs="+", help="these widths instead of the grid's (no extra points)")
    parser.add_argument("--steps", type=int, nargs="+", help="these step counts instead of the grid's (no extra points)")
    parser.add_argument("--batch-size", type=int, help="the global batch instead of the grid's")
    parser.add_argument("--n-layer", type=int, help="the number of layers instead of the grid's")
    args = parser.parse_args(argv)
    if args.zipf and args.zipf_flat:
        parser.error("give --zipf or --zipf-flat, not both")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    name = ZIPF_FILE if args.zipf else ZIPF_FLAT_FILE if args.zipf_flat else SWEEP_FILE
    args.out = args.out or Path(__file__).resolve().parent / "data" / name
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from .device import get_device

    kind = "cpu" if not args.big or args.check else get_device().type
    with distributed.launched(kind) as ctx:  # under torchrun: join the process group (else one process)
        return _run(args, kind if ctx.world_size == 1 else str(ctx.device), ctx.is_main)


def _run(args, device: str, main: bool) -> int:
    if args.check:
        stored = load_sweep(args.out)
        point = stored["points"][0]
        grid = stored["grid"]
        again = train_point(point["width"], point["steps"], grid["batch_size"], grid["n_layer"],
                            world=grid.get("world"), eval_batches=grid.get("eval_batches", 8))
        if main:
            print(f"stored loss {point['loss']:.5f}, retrained {again['loss']:.5f}")
        return 0 if abs(again["loss"] - point["loss"]) < 1e-3 else 1
    grid = ZIPF_SWEEP if args.zipf else ZIPF_FLAT_SWEEP if args.zipf_flat else BIG_SWEEP if args.big else SWEEP
    if args.widths or args.steps:
        grid = {**grid, "widths": args.widths or grid["widths"], "steps": args.steps or grid["steps"], "extra": []}
    if args.batch_size is not None:
        grid = {**grid, "batch_size": args.batch_size}
    if args.n_layer is not None:
        grid = {**grid, "n_layer": args.n_layer}
    if args.missing_only:
        stored = load_sweep(args.out)
        done = {(p["width"], p["steps"]) for p in stored["points"]}
        todo = [list(p) for p in _pairs(grid) if tuple(p) not in done]
        more = run_sweep({**grid, "widths": [], "steps": [], "extra": todo}, device=device, jobs=args.jobs)
        stored["points"] += more["points"]
        stored["grid"], stored["seconds"] = grid, stored["seconds"] + more["seconds"]
        result = stored
    else:
        result = run_sweep(grid, device=device, jobs=args.jobs)
    if main:  # under torchrun only rank 0 writes and prints
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
