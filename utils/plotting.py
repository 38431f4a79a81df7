"""One plotting style for the whole course, and the figures that several chapters share (chapter 1).

Nothing here runs on import: a chapter calls ``use_course_style()`` once after its imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["use_course_style", "plot_distribution", "plot_training", "COLORS"]

#: Colour-blind-safe palette (Okabe & Ito 2008), used in this order across the course.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
KEPT, DROPPED = COLORS[0], "#BBBBBB"


def use_course_style() -> None:
    """Apply the course's matplotlib style (sizes, grid, palette). Defined in chapter 1."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update({
        "figure.figsize": (7.0, 3.6),
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "figure.constrained_layout.use": True,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "axes.prop_cycle": cycler(color=COLORS),
        "font.size": 10,
        "legend.frameon": False,
    })


def plot_distribution(tokens: Sequence[str], probs, ax=None, title: str | None = None,
                      kept=None, annotate: bool = True, ylim: float | None = 1.0):
    """Bar chart of a next-token distribution; tokens outside ``kept`` (a boolean mask) are grey.

    Used by the sampling explorer and the static figures of chapter 1, and by later chapters
    to show what a model predicts. Returns the matplotlib Axes. Defined in chapter 1.
    """
    import matplotlib.pyplot as plt

    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 1 or len(tokens) != probs.shape[0]:
        raise ValueError(f"tokens ({len(tokens)}) and probs (shape {probs.shape}) must describe the same 1-D vocabulary")
    kept = np.ones_like(probs, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    if ax is None:
        _, ax = plt.subplots()
    ax.bar(range(len(tokens)), probs, color=[KEPT if k else DROPPED for k in kept])
    ax.set_xticks(range(len(tokens)), tokens, rotation=30 if max(map(len, tokens)) > 5 else 0)
    ax.set_ylabel("probability")
    if ylim is not None:
        ax.set_ylim(0, ylim)
    if annotate:
        for i, p in enumerate(probs):
            ax.annotate(f"{p:.2f}", (i, p), ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
    if title:
        ax.set_title(title)
    return ax


def plot_training(history, floor: float | None = None, axes=None, title: str = "Training"):
    """Two panels from a ``utils.train`` history: loss (train and validation, with the entropy floor
    if given) and perplexity = exp(loss), both against the step. Returns the two Axes. Defined in chapter 8.
    """
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mpl_ticker

    if not history.steps:
        raise ValueError("the history is empty: train for at least one step first")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    steps = np.asarray(history.steps) + 1
    for ax, transform, label in ((axes[0], lambda v: np.asarray(v), "loss (nats/token)"),
                                 (axes[1], lambda v: np.exp(v), "perplexity")):
        ax.plot(steps, transform(history.train_loss), color=COLORS[0], alpha=0.6, lw=1, label="train (one batch)")
        if history.eval_steps:
            ax.plot(history.eval_steps, transform(history.eval_loss), "o-", color=COLORS[1], label="validation")
        if floor is not None:
            ax.axhline(float(transform(floor)), color=COLORS[7], ls="--", lw=1.2, label="entropy floor")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(mpl_ticker.FormatStrFormatter("%g"))
        low, high = ax.get_ylim()
        if high / low < 30:  # label the minor ticks only when there are few of them
            ax.yaxis.set_minor_formatter(mpl_ticker.FormatStrFormatter("%g"))
        else:
            ax.yaxis.set_minor_formatter(mpl_ticker.NullFormatter())
        ax.set_xlabel("step")
        ax.set_ylabel(label)
    axes[0].set_title(f"{title}: loss")
    axes[1].set_title(f"{title}: perplexity")
    axes[0].legend()
    return axes
