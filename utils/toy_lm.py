"""A language model small enough to print every step: next-word counts (chapter 1).

A bigram model predicts the next word from the current word only, using counts from a tiny
corpus: P(next | current) = count(current, next) / count(current), the conditional probability
from counts of chapter 1's first section. Its logits are log-probabilities, so softmax gives the
probabilities back. Real models condition on the whole context (chapter 7); the loop that samples
from them is the same (``utils.sampling.generate``).

Deliberately left out: tokenisation (words split on spaces; chapter 2 does it properly) and any
learning beyond counting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .validation import check_real

__all__ = ["TINY_CORPUS", "BigramLM"]

#: The toy corpus of chapter 1. Greedy decoding from "the" loops on it (see the chapter).
TINY_CORPUS = (
    "the cat sat on the mat . the dog sat on the rug . "
    "the cat saw the dog . the dog ran to the park ."
)


class BigramLM:
    """Next-word model from bigram counts, with add-``smoothing`` so no word has probability 0.

    Example: on "a b a c", count(a, b) = count(a, c) = 1, so P(b | a) = P(c | a) = 0.5 (no smoothing).
    """

    def __init__(self, text: str = TINY_CORPUS, smoothing: float = 0.0):
        words = text.split()
        if len(words) < 2:
            raise ValueError(f"text must contain at least 2 words to count a bigram, got {len(words)}")
        check_real(smoothing, "smoothing", 0.0)  # not a bool, not NaN: add-k counts need a number k >= 0
        self.vocab: list[str] = sorted(set(words))  # sorted, so token ids do not depend on hash order
        self.stoi = {w: i for i, w in enumerate(self.vocab)}
        V = len(self.vocab)
        self.counts = np.zeros((V, V))  # counts[i, j] = how often word j follows word i
        for a, b in zip(words, words[1:]):
            self.counts[self.stoi[a], self.stoi[b]] += 1
        smoothed = self.counts + smoothing
        row_totals = smoothed.sum(axis=1, keepdims=True)
        # A word never followed by anything (the corpus's last word, if unique) predicts uniformly.
        self.probs = np.where(row_totals > 0, smoothed / np.maximum(row_totals, 1e-300), 1.0 / V)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        unknown = [w for w in text.split() if w not in self.stoi]
        if unknown:
            raise ValueError(f"words not in the vocabulary: {unknown}; allowed: {self.vocab}")
        return [self.stoi[w] for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab[i] for i in ids)

    def next_logits(self, context: Sequence[int]) -> np.ndarray:
        """Logits of the next word: log P(next | last word). Impossible words get -inf."""
        if len(context) == 0:
            raise ValueError("context must contain at least one token id, got an empty sequence")
        with np.errstate(divide="ignore"):
            return np.log(self.probs[context[-1]])
