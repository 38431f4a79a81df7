"""Real text for readers who are online, e.g. in Colab (chapter 8's optional section).

    text = load_text()                                  # Tiny Shakespeare, downloaded once and cached
    data = TextBatches(text, course_tokenizer(), block_size=128, batch_size=32)
    trainer = Trainer(model, TrainConfig(...), data.get_batch)

``load_text`` reads a local path or downloads a URL (any ``urllib`` URL, including ``file://``),
caches downloads under ``~/.cache/llm-core-concepts``, and checks that the text is non-empty
UTF-8. The tests use ``sample_text()``, two public-domain Shakespeare sonnets (XVIII and CXVI)
shipped with the package, so the loading code is tested without a network.

Unlike the tiny world, real text has no known entropy: the loss can only be compared with
other models. ``TextBatches`` takes random windows (as nanoGPT does) from the first 90% of the
tokens for training and from the last 10% for validation.
"""

from __future__ import annotations

import hashlib
import urllib.request
from importlib import resources
from pathlib import Path

import torch

__all__ = ["TINY_SHAKESPEARE_URL", "load_text", "sample_text", "TextBatches"]

#: Karpathy's char-rnn "tinyshakespeare": about 1 MB of Shakespeare's plays (public domain).
TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
CACHE_DIR = Path.home() / ".cache" / "llm-core-concepts"


def sample_text() -> str:
    """Two Shakespeare sonnets that ship with the package (about 1 kB). Defined in chapter 8."""
    return resources.files("utils").joinpath("data", "sonnets_sample.txt").read_text(encoding="utf-8")


def load_text(source: str | Path = TINY_SHAKESPEARE_URL, cache_dir: str | Path | None = None,
              timeout: float = 30.0) -> str:
    """Text from a local file or a URL; a download is cached, so it happens once. Defined in chapter 8."""
    source_str = str(source)
    if "://" not in source_str:
        path = Path(source_str)
        if not path.is_file():
            raise ValueError(f"source {source_str!r} is neither a file nor a URL (http://, https://, file://)")
        data = path.read_bytes()
    else:
        cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
        cached = cache / (hashlib.sha256(source_str.encode()).hexdigest()[:16] + ".txt")
        if cached.is_file():
            data = cached.read_bytes()
        else:
            try:
                with urllib.request.urlopen(source_str, timeout=timeout) as response:
                    data = response.read()
            except OSError as e:  # URLError, timeouts, refused connections
                raise ConnectionError(f"could not download {source_str}: {e}. Offline? Use sample_text() or a "
                                      "local file instead") from e
            cache.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{source_str} is not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise ValueError(f"{source_str} contains no text")
    return text


class TextBatches:
    """Random windows of a tokenized text, deterministic in (split, step). Defined in chapter 8."""

    SEEDS = {"train": 21, "val": 22}

    def __init__(self, text: str, tokenizer, block_size: int, batch_size: int, val_fraction: float = 0.1):
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size and batch_size must be >= 1, got {block_size} and {batch_size}")
        ids = torch.tensor(tokenizer.encode_ordinary(text), dtype=torch.long)
        cut = int(len(ids) * (1 - val_fraction))
        self.splits = {"train": ids[:cut], "val": ids[cut:]}
        for name, part in self.splits.items():
            if len(part) < block_size + 1:
                raise ValueError(f"the {name} split has {len(part)} tokens, fewer than block_size + 1 = "
                                 f"{block_size + 1}; use a longer text or a shorter block_size")
        self.block_size, self.batch_size = block_size, batch_size

    def get_batch(self, split: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.SEEDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        ids = self.splits[split]
        g = torch.Generator().manual_seed(self.SEEDS[split] * 1_000_003 + step)
        starts = torch.randint(0, len(ids) - self.block_size, (self.batch_size,), generator=g)
        x = torch.stack([ids[s: s + self.block_size] for s in starts.tolist()])
        y = torch.stack([ids[s + 1: s + 1 + self.block_size] for s in starts.tolist()])
        return x, y
