"""The course tokenizer, and the tokenizers chapter 2 compares, built the same way wherever they are needed (chapter 2).

Two byte-level BPE tokenizers with the same vocabulary size and the same English training text:

- ``english_only``: trained on English alone (standard-library docstrings, ``utils.corpus``);
- ``mixed``: the same English plus the first paragraphs of the course's Chinese essay, repeated
  so that Chinese is a noticeable share of the training bytes, as it is for a vendor that
  trains on more Chinese.

The last two paragraphs of each language of the essay are never used for training, so that
measurements on them are held out.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib import resources

from .bpe import BPETokenizer
from .corpus import parallel_text, stdlib_docstrings

__all__ = ["english_and_mixed_tokenizers", "course_tokenizer", "train_course_tokenizer", "HELD_OUT_PARAGRAPHS",
           "ENGLISH_BYTES", "CHINESE_REPEATS", "COURSE_TOKENIZER_FILE"]

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


COURSE_TOKENIZER_FILE = "course_tokenizer.json"
COURSE_VOCAB_SIZE = 4096


def train_course_tokenizer() -> BPETokenizer:
    """The course tokenizer: 4,096 tokens (4,093 merges and 3 special tokens) learned from 1 MB of
    English docstrings plus the training paragraphs of the Chinese essay. Defined in chapter 2.

    Training depends on the Python version's docstrings, so the course ships the result
    (``utils/data/course_tokenizer.json``) and ``course_tokenizer()`` loads it; regenerate with
    ``python -m utils.course_tokenizers``.
    """
    english = stdlib_docstrings(1_000_000)
    chinese = "\n\n".join(parallel_text("zh")[:-HELD_OUT_PARAGRAPHS])
    tok = BPETokenizer(special_tokens=["<|endoftext|>", "<|user|>", "<|assistant|>"])
    return tok.train(english + ("\n\n" + chinese) * CHINESE_REPEATS, COURSE_VOCAB_SIZE)


@lru_cache(maxsize=1)
def course_tokenizer() -> BPETokenizer:
    """Load the course tokenizer that ships with the package (instant). Defined in chapter 2."""
    path = resources.files("utils").joinpath("data", COURSE_TOKENIZER_FILE)
    with resources.as_file(path) as p:
        return BPETokenizer.load(p)


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).resolve().parent / "data" / COURSE_TOKENIZER_FILE
    train_course_tokenizer().save(target)
    print(f"wrote {target} ({target.stat().st_size:,} bytes)", file=sys.stderr)
