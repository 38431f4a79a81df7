"""A long-tailed tiny world: subjects drawn with Zipf frequencies, entropy floor still exact (chapter 11).

``World`` (chapter 8) picks a sentence's subject uniformly, so every fact is about equally common
and a model learns them all at about the same time: its loss falls off a cliff instead of
following a power law. Text is not like that. A few subjects are very common and there is a long
tail of rarer and rarer ones, often close to Zipf's law. ``ZipfWorld`` draws the subject of rank
``r`` (1 = most common) with probability

    p(r) = r^(-s) / sum_{k=1..K} k^(-s)          (s = ``exponent``; s = 0 is uniform)

among the K subjects of its kind; everything else is ``World``'s: the same templates, the same
facts fixed by the seed, the same tokenizer. Each new order of magnitude of data reaches a new
slice of the tail, which is what makes loss a power law in data (Hutter, 2021) and, once a model
is too small to hold every fact it has seen, in size (Michaud et al., 2023).

The floor stays exact: sentences are still independent and still name their subject, so

    H(sentence) = H(template) + sum_t p(t) * H(p restricted to the kind of template t)    (nats)

and ``entropy_per_token`` divides it by the exactly enumerated expected token count, as for
``World``. tests/test_long_tail.py checks the formula against Monte Carlo estimates.

    world = ZipfWorld(seed=0, n_countries=500, n_people=2000, exponent=1.2)
    world.subject_probs("country")[:3]       # the three most common countries' shares
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from .tiny_world import TEMPLATES, World, _entropy
from .validation import check_real

__all__ = ["ZipfWorld", "zipf_probs"]


def zipf_probs(n: int, exponent: float) -> list[float]:
    """Probabilities of ranks 1..n under Zipf's law with ``exponent`` s >= 0: p(r) proportional to r^-s.

    Example: zipf_probs(3, 1.0) -> [6/11, 3/11, 2/11] = [0.545..., 0.272..., 0.181...].
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    s = check_real(exponent, "exponent", 0.0)
    weights = [r ** -s for r in range(1, n + 1)]
    total = math.fsum(weights)
    return [w / total for w in weights]


@dataclass
class ZipfWorld(World):
    """``World`` with Zipf-distributed subjects (rank = order of creation). Defined in chapter 11."""

    n_countries: int = 500
    n_people: int = 2000
    exponent: float = 1.2

    def __post_init__(self):
        check_real(self.exponent, "exponent", 0.0, 4.0)  # beyond 4 nearly all mass is on the first subject
        super().__post_init__()
        self._probs = {kind: zipf_probs(len(self.subjects(kind)), self.exponent) for kind in ("country", "person")}
        self._cumulative = {kind: list(itertools.accumulate(p)) for kind, p in self._probs.items()}

    def subject_probs(self, kind: str) -> list[float]:
        """The probability of each subject of ``kind`` ("country" or "person"), in ``subjects(kind)`` order."""
        if kind not in self._probs:
            raise ValueError(f"kind must be 'country' or 'person', got {kind!r}")
        return list(self._probs[kind])

    def all_sentences(self) -> list[tuple[str, float]]:
        out = []
        for t, (_, p, kind) in enumerate(TEMPLATES):
            out.extend((self.render(t, s), p * q) for s, q in zip(self.subjects(kind), self._probs[kind]))
        return out

    def sample_sentence(self, rng: random.Random) -> str:
        t = rng.choices(range(len(TEMPLATES)), weights=[p for _, p, _ in TEMPLATES])[0]
        kind = TEMPLATES[t][2]
        subject = rng.choices(self.subjects(kind), cum_weights=self._cumulative[kind])[0]
        return self.render(t, subject)

    def entropy_per_sentence(self) -> float:
        """H(sentence) in nats: template choice plus the Zipf subject choice; facts add nothing."""
        self.check_injective()
        return _entropy(p for _, p, _ in TEMPLATES) + sum(
            p * _entropy(self._probs[kind]) for _, p, kind in TEMPLATES)
