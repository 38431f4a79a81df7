"""Byte-level BPE, from scratch (chapter 2, "Tokens").

Byte-pair encoding (Sennrich et al., ACL 2016; byte-level as in GPT-2, Radford et al. 2019) starts
from the 256 possible bytes and repeatedly merges the most frequent adjacent pair of tokens into a
new token. Any text is a sequence of UTF-8 bytes, so any text can be encoded: no "unknown token".

    tok = BPETokenizer()                    # GPT-2's regex pre-split by default
    tok.train(text, vocab_size=512)         # 256 bytes + 256 merges
    ids = tok.encode("unhappiness")         # -> a list of ints
    tok.decode(ids) == "unhappiness"        # always True for valid Unicode text

Rules stated here because tests rely on them:
- **Tie rule.** When several pairs share the highest count, the pair that is smallest as a tuple
  of token ids wins, e.g. (101, 32) beats (116, 104). New tokens get ids 256, 257, ... in order.
- **Pre-split.** With a regex pattern, text is first cut into chunks (words, numbers, spaces,
  punctuation) and merges never cross a chunk boundary. GPT-2's pattern cuts "dog." into "dog"
  and "." and " dog!" into " dog" and "!", so no token such as "dog." or "dog!" is ever learned
  (Radford et al. 2019, section 2.2); but " dog" (with its leading space) and "dog" are different
  chunks and get different tokens. ``pattern=None`` trains on the raw byte stream. Any pattern round-trips: each match is a
  chunk (the whole match, even if the pattern has groups), and so is the text between two matches,
  so a pattern such as ``[a-z]+`` cannot drop "H" from "Hello".
- **Special tokens** (e.g. ``<|endoftext|>``) get ids after the merges, are never produced by
  merging, and are matched in the text only when ``encode(..., allowed_special=...)`` allows it.

Training counts each distinct chunk once with its frequency and, after a merge, updates only the
counts of chunks that contained the merged pair; that is what makes about 1 MB of text train in
seconds in pure Python. Deliberately left out: GPT-2's byte-to-unicode display mapping (we show
bytes as escaped text instead) and dropout or other regularised variants.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from .validation import ArgumentTypeError, check_token_ids

__all__ = ["GPT2_PATTERN", "BPETokenizer", "count_pairs", "merge_pair"]

#: GPT-2's pre-tokenisation pattern (from OpenAI's released code, openai/gpt-2 src/encoder.py):
#: contractions, letters, numbers,
#: other symbols, each optionally with one leading space; then runs of whitespace.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

FORMAT = "llmcc-bpe/1"


def count_pairs(ids: list[int], counts: dict | None = None, weight: int = 1) -> dict:
    """Count adjacent pairs. Defined in chapter 2.

    Example: count_pairs([1, 2, 3, 1, 2]) -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by ``new_id``.

    Example: merge_pair([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]
    """
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _compile(pattern: str | None):
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ArgumentTypeError(f"pattern must be a regular expression (str) or None, got {type(pattern).__name__} "
                                f"{pattern!r:.40}")
    try:
        import regex  # \p{L} (any letter) needs the `regex` module, as GPT-2's code does
    except ImportError:  # pragma: no cover - regex is a dependency
        raise ImportError("the GPT-2 pattern needs the `regex` package: pip install regex") from None
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None


def _split_keeping_gaps(compiled, text: str) -> list[str]:
    """Cut text into the pattern's matches and the text between them: joined, the chunks are the text."""
    if compiled.groups == 0:  # fast path: findall returns whole matches; they tile the text if nothing is left out
        chunks = compiled.findall(text)
        if sum(map(len, chunks)) == len(text):
            return chunks
    chunks, pos = [], 0
    for m in compiled.finditer(text):
        if m.start() > pos:
            chunks.append(text[pos:m.start()])  # text no match covers: a chunk of its own, never dropped
        if m.end() > m.start():
            chunks.append(m.group(0))  # the whole match, even when the pattern has capture groups
        pos = max(pos, m.end())
    if pos < len(text):
        chunks.append(text[pos:])
    return chunks


class BPETokenizer:
    """A byte-level BPE tokenizer: ``train``, ``encode``, ``decode``, ``save``, ``load``."""

    def __init__(self, pattern: str | None = GPT2_PATTERN, special_tokens: Iterable[str] = ()):
        self._regex = _compile(pattern)
        self.pattern = pattern
        self.merges: dict[tuple[int, int], int] = {}  # (a, b) -> new id, in the order learned
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        if isinstance(special_tokens, str):
            raise ArgumentTypeError(f"special_tokens must be a list of names, got the str {special_tokens!r}; "
                                    f"write [{special_tokens!r}]")
        special_tokens = list(special_tokens)
        for i, name in enumerate(special_tokens):
            if not isinstance(name, str) or not name:
                raise ValueError(f"special_tokens[{i}] must be a non-empty str, got {name!r}")
        self._special_names = list(dict.fromkeys(special_tokens))
        self.special_tokens: dict[str, int] = {}
        self._assign_special_ids()
        self._cache: dict[bytes, list[int]] = {}
        self.had_ties = False  # set by train(): did any merge step have a tie for the top count?

    # -- vocabulary ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges) + len(self.special_tokens)

    def _assign_special_ids(self) -> None:
        base = 256 + len(self.merges)
        self.special_tokens = {name: base + i for i, name in enumerate(self._special_names)}
        self._special_regex = (re.compile("(" + "|".join(re.escape(s) for s in sorted(
            self.special_tokens, key=len, reverse=True)) + ")") if self.special_tokens else None)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (special tokens: their UTF-8 name)."""
        if token_id in self.vocab:
            return self.vocab[token_id]
        for name, i in self.special_tokens.items():
            if i == token_id:
                return name.encode("utf-8")
        raise ValueError(f"token id {token_id} is outside the vocabulary [0, {self.vocab_size - 1}]")

    def _chunks(self, text: str) -> list[str]:
        if self._regex is None:
            return [text] if text else []
        return _split_keeping_gaps(self._regex, text)

    # -- training --------------------------------------------------------------------------------
    def train(self, text: str, vocab_size: int, verbose: bool = False) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``. Returns self.

        Stops early (with fewer merges) if no pair occurs twice, since merging a pair seen once
        compresses nothing that generalises.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}; decode bytes to text first")
        n_special = len(self._special_names)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256 + n_special:
            raise ValueError(f"vocab_size must be an integer >= 256 + {n_special} special token(s) "
                             f"(the byte alphabet), got {vocab_size!r}")
        # Each distinct chunk once, with how often it occurs. Special-token names are cut out first,
        # so that no merge learns their characters.
        pieces = self._special_regex.split(text) if self._special_regex is not None else [text]
        chunk_counts = Counter(c for piece in pieces if piece not in self.special_tokens for c in self._chunks(piece))
        words: list[list[int]] = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        freqs: list[int] = list(chunk_counts.values())
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words containing it
        for w, (ids, f) in enumerate(zip(words, freqs)):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += f
                where[pair].add(w)
        # Max-heap of (-count, pair): the smallest tuple is the highest count, ties -> smallest pair.
        heap = [(-c, p) for p, c in pair_counts.items()]
        heapq.heapify(heap)

        self.merges, self.vocab = {}, {i: bytes([i]) for i in range(256)}
        self.had_ties = False
        n_merges = vocab_size - 256 - n_special
        for k in range(n_merges):
            best = None
            while heap:
                neg, pair = heapq.heappop(heap)
                if pair_counts.get(pair, 0) == -neg:  # skip stale heap entries
                    best = (pair, -neg)
                    break
            if best is None or best[1] < 2:
                break
            pair, count = best
            # drop stale entries and copies of the winner, so the top is the true runner-up
            while heap and (heap[0][1] == pair or pair_counts.get(heap[0][1], 0) != -heap[0][0]):
                heapq.heappop(heap)
            if heap and heap[0][0] == -count:
                self.had_ties = True
            new_id = 256 + k
            self.merges[pair] = new_id
            self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]
            # Update only the words that contain the pair, then re-queue every pair whose count changed.
            changed = set()
            for w in list(where[pair]):
                old, f = words[w], freqs[w]
                new = merge_pair(old, pair, new_id)
                old_pairs, new_pairs = list(zip(old, old[1:])), list(zip(new, new[1:]))
                for p in old_pairs:
                    pair_counts[p] -= f
                for p in new_pairs:
                    pair_counts[p] += f
                for p in set(old_pairs) - set(new_pairs):
                    where[p].discard(w)
                for p in set(new_pairs):
                    where[p].add(w)
                changed.update(old_pairs)
                changed.update(new_pairs)
                words[w] = new
            pair_counts.pop(pair, None)
            changed.discard(pair)
            for p in changed:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
            if verbose:
                print(f"merge {k + 1}/{n_merges}: {pair} -> {new_id} {self.vocab[new_id]!r} (count {count})")
        self._assign_special_ids()
        self._cache = {}
        return self

    # -- encoding and decoding -------------------------------------------------------------------
    def _encode_chunk(self, chunk: bytes) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk)
        while len(ids) >= 2:
            # Apply the earliest-learned merge present, as training did.
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break
            ids = merge_pair(ids, pair, self.merges[pair])
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token names as ordinary text."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        for chunk in self._chunks(text):
            try:
                data = chunk.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"text is not valid Unicode (a lone surrogate at {e.start}?): {e.reason}") from None
            ids.extend(self._encode_chunk(data))
        return ids

    def encode(self, text: str, allowed_special: str | set = "none_raise") -> list[int]:
        """Encode text to token ids.

        ``allowed_special``: ``"all"`` turns special-token names in the text into their ids;
        ``"none"`` encodes them as ordinary text; ``"none_raise"`` (default) raises if the text
        contains one, since a document that smuggles in ``<|endoftext|>`` is usually a bug
        (tiktoken's convention); a set allows those names and raises for any other special token.
        """
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special in ("none", "none_raise"):
            allowed = set()
        elif isinstance(allowed_special, set):
            unknown = allowed_special - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special names unknown special tokens {sorted(unknown)}; "
                                 f"this tokenizer has {sorted(self.special_tokens)}")
            allowed = allowed_special
        else:
            raise ValueError(f"allowed_special must be 'all', 'none', 'none_raise' or a set, got {allowed_special!r}")
        if allowed_special != "none" and self._special_regex is not None and isinstance(text, str):
            found = next((m for m in self._special_regex.finditer(text) if m.group() not in allowed), None)
            if found:
                raise ValueError(f"text contains the special token {found.group()!r}; pass allowed_special='all' "
                                 "to encode it as a special token or 'none' to encode it as ordinary text")
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for part in self._special_regex.split(text):
            if part in allowed:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token ids -> the bytes they stand for. Ids must be integers: 3.7 is refused, not truncated to 3."""
        return b"".join(self.token_bytes(i) for i in check_token_ids(ids, "ids", self.vocab_size))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Token ids -> text. A cut in the middle of a UTF-8 character shows as U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- saving ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a small, readable JSON file: pattern, special tokens, merges in order."""
        merges = [[a, b] for (a, b) in self.merges]  # ids follow from the order
        data = {"format": FORMAT, "pattern": self.pattern, "special_tokens": self._special_names,
                "merges": merges}
        text = json.dumps(data, ensure_ascii=False, indent=1)
        # one merge per line, readable in any editor
        text = re.sub(r"\[\n\s+(\d+),\n\s+(\d+)\n\s+\]", r"[\1, \2]", text)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a file written by ``save``, checking it: a repeated merge or a merge of a token that
        does not exist yet would shift every later id, so that special tokens collide with merges."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a readable {FORMAT} file: {e}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path} is not a {FORMAT} file (format={got!r})")
        for key, kind in (("pattern", (str, type(None))), ("special_tokens", list), ("merges", list)):
            if not isinstance(data.get(key), kind):
                raise ValueError(f"{path}: '{key}' must be {'a str or null' if key == 'pattern' else 'a list'}, "
                                 f"got {data.get(key)!r:.60}")
        if len(set(map(str, data["special_tokens"]))) != len(data["special_tokens"]):
            raise ValueError(f"{path}: special_tokens has a name twice: {data['special_tokens']}")
        try:
            tok = cls(pattern=data["pattern"], special_tokens=data["special_tokens"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        for k, pair in enumerate(data["merges"]):
            new_id = 256 + k
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(a, int) and not isinstance(a, bool) for a in pair)):
                raise ValueError(f"{path}: merge {k} must be a pair of token ids [a, b], got {pair!r}")
            a, b = pair
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"{path}: merge {k} uses a token that does not exist yet: {(a, b)} "
                                 f"(ids so far: 0 to {new_id - 1})")
            if (a, b) in tok.merges:
                raise ValueError(f"{path}: merge {k} repeats merge {tok.merges[(a, b)] - 256} {(a, b)}; every "
                                 "merge must be new, or the ids after it would not be contiguous")
            tok.merges[(a, b)] = new_id
            tok.vocab[new_id] = tok.vocab[a] + tok.vocab[b]
        tok._assign_special_ids()
        return tok
