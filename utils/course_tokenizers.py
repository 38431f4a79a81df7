"""The tokenizers chapter 2 compares, built the same way wherever they are needed (chapter 2).

Two byte-level BPE tokenizers with the same vocabulary size and the same English training text:

- ``english_only``: trained on English alone (standard-library docstrings, ``utils.corpus``);
- ``mixed``: the same English plus the first paragraphs of the course's Chinese essay, repeated
  so that Chinese is a noticeable share of the training bytes, as it is for a vendor that
  trains on more Chinese.

The last two paragraphs of each language of the essay are never used for training, so that
measurements on them are held out.
"""

from __future__ import annotations

from functools import lru_cache

from .bpe import BPETokenizer
from .corpus import parallel_text, stdlib_docstrings

__all__ = ["english_and_mixed_tokenizers", "HELD_OUT_PARAGRAPHS", "ENGLISH_BYTES", "CHINESE_REPEATS"]

HELD_OUT_PARAGRAPHS = 2
ENGLISH_BYTES = 300_000
CHINESE_REPEATS = 20


@lru_cache(maxsize=4)
def english_and_mixed_tokenizers(vocab_size: int = 2048) -> tuple[BPETokenizer, BPETokenizer]:
    """(english_only, mixed) tokenizers; cached, since training takes a few seconds. Defined in chapter 2."""
    english = stdlib_docstrings(ENGLISH_BYTES)
    chinese = "\n\n".join(parallel_text("zh")[:-HELD_OUT_PARAGRAPHS])
    english_only = BPETokenizer().train(english, vocab_size)
    mixed = BPETokenizer().train(english + ("\n\n" + chinese) * CHINESE_REPEATS, vocab_size)
    return english_only, mixed
