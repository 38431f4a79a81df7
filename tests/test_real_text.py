"""Loading real text offline: local files, file:// URLs, the cache, and clear errors."""

import pytest
import torch

from utils.course_tokenizers import course_tokenizer
from utils.real_text import TextBatches, load_text, sample_text


def test_sample_text_ships_with_the_package():
    text = sample_text()
    assert text.startswith("XVIII") and "summer's day" in text and text.count("\n") > 25


def test_load_from_path_and_from_url_with_cache(tmp_path):
    source = tmp_path / "poem.txt"
    source.write_text(sample_text(), encoding="utf-8")
    assert load_text(source) == sample_text()
    cache = tmp_path / "cache"
    url = source.as_uri()  # file:///...: the same urllib code path as https://
    assert load_text(url, cache_dir=cache) == sample_text()
    assert len(list(cache.iterdir())) == 1
    source.unlink()  # the second load must come from the cache
    assert load_text(url, cache_dir=cache) == sample_text()


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a file nor a URL"):
        load_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="contains no text"):
        load_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_text(tmp_path / "latin1.txt")
    with pytest.raises(ConnectionError, match="could not download"):
        load_text("http://127.0.0.1:9/nothing.txt", cache_dir=tmp_path, timeout=2)


def test_text_batches():
    tok = course_tokenizer()
    data = TextBatches(sample_text(), tok, block_size=16, batch_size=4)
    x, y = data.get_batch("train", 0)
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x, data.get_batch("train", 0)[0])
    val_ids = data.splits["val"].tolist()
    xv, _ = data.get_batch("val", 0)
    for row in xv.tolist():
        assert any(val_ids[i: i + 16] == row for i in range(len(val_ids) - 15))
    with pytest.raises(ValueError, match="fewer than block_size"):
        TextBatches(sample_text(), tok, block_size=200, batch_size=2)
