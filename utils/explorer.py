"""See what temperature, top-k and top-p do to one distribution (chapter 1).

``sampling_explorer`` is an ipywidgets control panel for a live notebook (Jupyter, Colab);
``plot_sampling_grid`` draws the same panels for chosen settings as a static figure, which is
what the online book shows. Both draw with ``plot_sampling_setting`` so they cannot disagree:
blue bars are what the sampler draws from, grey bars the tokens the filters removed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .plotting import plot_distribution
from .sampling import next_token_probs

__all__ = ["plot_sampling_setting", "plot_sampling_grid", "sampling_explorer"]


def _describe(temperature, top_k, top_p) -> str:
    parts = [f"T={temperature:g}"]
    parts.append(f"top-k={top_k}" if top_k else "no top-k")
    parts.append(f"top-p={top_p:g}" if top_p not in (None, 1.0) else "no top-p")
    return ", ".join(parts)


def plot_sampling_setting(ax, tokens: Sequence[str], logits, temperature: float = 1.0,
                          top_k: int | None = None, top_p: float | None = None, title: str | None = None):
    """Draw the final sampling distribution for one setting and return it.

    Kept tokens (blue) show the probability the sampler uses, after renormalising; filtered-out
    tokens (grey) show the probability they had before the filters removed them, so the reader
    sees what was cut.
    """
    before = next_token_probs(logits, temperature)
    probs = next_token_probs(logits, temperature, top_k or None, top_p)
    kept = probs > 0
    plot_distribution(tokens, np.where(kept, probs, before), ax=ax, kept=kept,
                      title=title or _describe(temperature, top_k, top_p))
    return probs


def plot_sampling_grid(tokens: Sequence[str], logits, settings: Sequence[dict], ncols: int = 3):
    """One panel per setting, e.g. ``settings=[{"temperature": 0.5}, {"top_p": 0.9}]``."""
    import matplotlib.pyplot as plt

    nrows = -(-len(settings) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, s in zip(axes.flat, settings):
        plot_sampling_setting(ax, tokens, logits, **s)
    for ax in list(axes.flat)[len(settings):]:
        ax.set_visible(False)
    return fig


def sampling_explorer(tokens: Sequence[str], logits):
    """Sliders for temperature, top-k (0 = off) and top-p that redraw the bar chart.

    Needs a live kernel; the returned widget has ``.update(temperature, top_k, top_p)``, which
    returns the plotted probabilities (handy for checking it without a mouse).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    logits = np.asarray(logits, dtype=float)
    temperature = widgets.FloatLogSlider(value=1.0, base=10, min=-1.3, max=0.7, step=0.02,
                                         description="temperature", continuous_update=False)
    top_k = widgets.IntSlider(value=0, min=0, max=len(tokens), description="top-k (0=off)",
                              continuous_update=False)
    top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p",
                                continuous_update=False)
    out = widgets.Output()

    def update(temperature=1.0, top_k=0, top_p=1.0):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6, 3))
            probs = plot_sampling_setting(ax, tokens, logits, temperature, top_k, top_p)
            display(fig)
            plt.close(fig)  # shown once, in the panel; not again at the end of the cell
        return probs

    def on_change(_):
        update(temperature.value, top_k.value, top_p.value)

    for w in (temperature, top_k, top_p):
        w.observe(on_change, names="value")
    panel = widgets.VBox([widgets.HBox([temperature, top_k, top_p]), out])
    panel.update = update
    on_change(None)
    return panel
