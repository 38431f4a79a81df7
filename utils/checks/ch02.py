"""Checks for the chapter 2 exercises: tokens and byte-level BPE.

Usage in the notebook::

    from utils.checks import ch02 as check
    check.count_pairs(count_pairs)
"""

from __future__ import annotations

import random

from .. import bpe as ref
from ..corpus import parallel_text
from . import Fail, as_number, call, question

QUESTIONS: dict = {}

_rng = random.Random(7)
RANDOM_IDS = [[_rng.randrange(6) for _ in range(_rng.randrange(0, 40))] for _ in range(30)]
TRICKY = ["", "unhappiness", "茶最初是一种药。", "🫖🍵 e\u0301", "tabs\tand\nnewlines\x00"]


@question(QUESTIONS, "q1", "count adjacent pairs", points=1)
def count_pairs(fn):
    got = fn([1, 2, 3, 1, 2])
    if got is None:
        raise Fail("returned None: did you forget `return`?")
    expected = ref.count_pairs([1, 2, 3, 1, 2])
    if dict(got) != expected:
        raise Fail(f"count_pairs([1, 2, 3, 1, 2]) gave {dict(got)}, expected {expected}: pair each id with the next one")
    if dict(fn([7])) != {} or dict(fn([])) != {}:
        raise Fail("a sequence with fewer than 2 ids has no pairs: return an empty dict")
    for ids in RANDOM_IDS:
        if dict(fn(list(ids))) != ref.count_pairs(ids):
            raise Fail(f"wrong counts for {ids}: overlapping pairs count too, e.g. [1, 1, 1] has (1, 1) twice")
    return "{(1, 2): 2, (2, 3): 1, (3, 1): 1}"


@question(QUESTIONS, "q2", "merge a pair", points=2)
def merge_pair(fn):
    got = fn([1, 2, 3, 1, 2], (1, 2), 4)
    if got != [4, 3, 4]:
        raise Fail(f"merge_pair([1, 2, 3, 1, 2], (1, 2), 4) gave {got}, expected [4, 3, 4]")
    got = fn([1, 1, 1], (1, 1), 9)
    if got == [9, 9]:
        raise Fail("[1, 1, 1] with pair (1, 1) gave [9, 9]: an id cannot be used twice; after a merge skip both ids")
    if got != [9, 1]:
        raise Fail(f"merge_pair([1, 1, 1], (1, 1), 9) gave {got}, expected [9, 1] (left to right, no overlap)")
    for ids in RANDOM_IDS:
        for pair in [(0, 1), (2, 2)]:
            original = list(ids)
            if fn(original, pair, 99) != ref.merge_pair(ids, pair, 99):
                raise Fail(f"wrong result for {ids} and pair {pair}")
            if original != ids:
                raise Fail("your function changed its input list; build a new list instead")
    return "left to right, without overlaps"


TRAIN_TEXT = "the cat sat on the mat; the hat is flat, that is that."


@question(QUESTIONS, "q3", "train BPE on bytes", points=2)
def train(fn):
    for text, n in [("aaabdaaabac", 3), ("cdcdabab", 1), (TRAIN_TEXT, 12)]:
        expected = list(ref.BPETokenizer(pattern=None).train(text, 256 + n).merges)
        got = fn(text, n)
        if got is None:
            raise Fail("returned None: return the list of merged pairs")
        got = [tuple(p) for p in got]
        if len(got) > len(expected) and got[: len(expected)] == expected:
            raise Fail(f"on {text!r} you returned {len(got)} merges, expected {len(expected)}: stop when no pair "
                       "occurs at least twice")
        if got != expected:
            first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            hint = ""
            if first < len(got) and first < len(expected):
                counts = {}
                ids = list(text.encode("utf-8"))
                for k, pair in enumerate(expected[:first]):
                    ids = ref.merge_pair(ids, pair, 256 + k)
                ref.count_pairs(ids, counts)
                if counts.get(got[first]) == counts.get(expected[first]):
                    hint = (f": {got[first]} and {expected[first]} both occur {counts[expected[first]]} times; the tie "
                            "rule takes the smaller pair (compare the tuples)")
                else:
                    hint = (f": at that step {expected[first]} occurs {counts.get(expected[first])} times, "
                            f"your pair {counts.get(got[first], 0)}")
            raise Fail(f"on {text!r}, merge {first + 1} differs{hint}")
    return "aaabdaaabac, and the tie rule"


@question(QUESTIONS, "q4", "encode with learned merges", points=2)
def encode(fn):
    tok = ref.BPETokenizer(pattern=None).train(TRAIN_TEXT, 256 + 12)
    merges = list(tok.merges)
    rng = random.Random(11)
    randoms = ["".join(rng.choice("the at ") for _ in range(rng.randrange(1, 25))) for _ in range(40)]
    for text in ["the cat sat on the mat", "that hat", "at the", "aaaa", "", "茶", *randoms]:
        got = call(fn, text, merges)
        expected = tok.encode(text)
        if got != expected:
            raise Fail(f"encode({text!r}) gave {got}, expected {expected}: start from the UTF-8 bytes and apply "
                       "merges in the order they were learned (merge k creates id 256 + k)")
    return "merges applied in learned order"


@question(QUESTIONS, "q5", "decode ids to text", points=1)
def decode(fn):
    tok = ref.BPETokenizer().train("\n\n".join(parallel_text("en")[:2] + parallel_text("zh")[:2]), 400)
    vocab = dict(tok.vocab)
    for text in TRICKY:
        ids = tok.encode(text)
        got = call(fn, ids, vocab)
        if isinstance(got, bytes):
            raise Fail("return a str: decode the joined bytes with .decode('utf-8', errors='replace')")
        if got != text:
            raise Fail(f"decode(encode({text!r})) gave {got!r}: join the bytes of every token first, then decode "
                       "the whole byte string once (a Chinese character spans several tokens)")
    if call(fn, [0xE8], vocab) != "\ufffd":
        raise Fail("a lone byte that is not valid UTF-8 should become U+FFFD: use errors='replace'")
    return "round-trips Chinese, emoji, control chars"


@question(QUESTIONS, "q6", "how much more Chinese costs", points=2)
def chinese_ratio(ratio):
    from ..course_tokenizers import english_and_mixed_tokenizers

    english_only, mixed = english_and_mixed_tokenizers()
    paragraph = parallel_text("zh")[-1]
    expected = len(english_only.encode(paragraph)) / len(mixed.encode(paragraph))
    ratio = as_number(ratio, "ratio")
    if abs(ratio - 1 / expected) < 0.01:
        raise Fail("you computed mixed / English-only; the question asks English-only / mixed (a number > 1)")
    if abs(ratio - expected) > 0.006:  # two correct decimals are enough
        raise Fail(f"got {ratio:.3f}; count len(tok.encode(paragraph)) with each tokenizer and divide")
    return f"{expected:.2f}x as many tokens"
