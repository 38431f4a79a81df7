"""Byte-level BPE: known answers, the tie rule, round trips, parity with Hugging Face `tokenizers`."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.bpe import GPT2_PATTERN, BPETokenizer, count_pairs, merge_pair
from utils.corpus import parallel_text


def naive_train(text: str, vocab_size: int, pattern) -> list[tuple[int, int]]:
    """Recount every pair after every merge: slow, obviously right, independent of the fast trainer."""
    import regex

    chunks = regex.findall(pattern, text) if pattern else [text]
    words = [list(c.encode("utf-8")) for c in chunks]
    merges = []
    for k in range(vocab_size - 256):
        counts = {}
        for w in words:
            count_pairs(w, counts)
        if not counts or max(counts.values()) < 2:
            break
        top = max(counts.values())
        pair = min(p for p, c in counts.items() if c == top)  # the stated tie rule
        merges.append(pair)
        words = [merge_pair(w, pair, 256 + k) for w in words]
    return merges


def test_docstring_examples():
    assert count_pairs([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge_pair([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlap


def test_known_answer_merges():
    # The classic example (Wikipedia, "Byte pair encoding"): aaabdaaabac -> ZabdZabac -> ZYdZYac -> XdXac.
    tok = BPETokenizer(pattern=None).train("aaabdaaabac", 259)
    # aa (count 4) -> 256; then (256, a) and (a, b) tie at 2 and the smaller tuple (97, 98) wins -> 257;
    # then (256, 257) -> 258.
    assert list(tok.merges) == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_tie_rule_smallest_pair_wins():
    tok = BPETokenizer(pattern=None).train("cdcdabab", 257)
    assert list(tok.merges) == [(97, 98)]  # (a, b) and (c, d) both occur twice; (97, 98) < (99, 100)
    assert tok.had_ties


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcde \n.,'", min_size=0, max_size=200), st.integers(256, 300),
       st.sampled_from([None, GPT2_PATTERN]))
def test_fast_trainer_equals_naive_trainer(text, vocab_size, pattern):
    tok = BPETokenizer(pattern=pattern).train(text, vocab_size)
    assert list(tok.merges) == naive_train(text, vocab_size, pattern)


@pytest.fixture(scope="module")
def trained():
    text = "\n\n".join(parallel_text("en") + parallel_text("zh"))
    return BPETokenizer(special_tokens=["<|endoftext|>"]).train(text, 600)


UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)  # any valid Unicode


@settings(max_examples=300, deadline=None)
@given(UNICODE)
def test_round_trip_any_unicode(trained, s):
    assert trained.decode(trained.encode(s, allowed_special="none")) == s


@pytest.mark.parametrize("s", [
    "", "unhappiness", "茶最初是一种药。", "emoji 🫖🍵👩🏽‍🔬 and flags 🇨🇳🇬🇧", "e\u0301 n\u0303 (combining marks)",
    "tabs\tnew\nlines\r\n\x00\x07\x1b[0m", "  many   spaces  ", "mixed 中文 and English 123,456.78",
])
def test_round_trip_tricky_strings(trained, s):
    assert trained.decode(trained.encode(s)) == s


def test_training_compresses_held_out_text(trained):
    text = "Tea is steeped in a pot."
    assert len(trained.encode(text)) < len(text.encode("utf-8"))


def test_special_tokens(trained):
    eot = trained.special_tokens["<|endoftext|>"]
    assert eot == 600 - 1 and trained.vocab_size == 600
    assert trained.encode("a<|endoftext|>b", allowed_special="all") == trained.encode("a") + [eot] + trained.encode("b")
    assert eot not in trained.encode("a<|endoftext|>b", allowed_special="none")
    with pytest.raises(ValueError, match="contains the special token"):
        trained.encode("a<|endoftext|>b")
    assert trained.decode([eot]) == "<|endoftext|>"
    with pytest.raises(ValueError, match="unknown special tokens"):
        trained.encode("x", allowed_special={"<|pad|>"})


def test_save_and_load(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained.save(path)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text)["format"] == "llmcc-bpe/1"
    assert re.search(r"^ +\[\d+, \d+\],?$", text, re.M)  # one readable merge per line
    loaded = BPETokenizer.load(path)
    sample = "茶 tea <|endoftext|> 123"
    assert loaded.encode(sample, allowed_special="all") == trained.encode(sample, allowed_special="all")
    assert loaded.merges == trained.merges and loaded.special_tokens == trained.special_tokens
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a llmcc-bpe/1 file"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_bad_input_errors(trained):
    with pytest.raises(ValueError, match=r"vocab_size must be an integer >= 256 \+ 0 special token\(s\).*got 100"):
        BPETokenizer().train("some text", 100)
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 256 \\+ 1"):
        BPETokenizer(special_tokens=["<|x|>"]).train("some text", 256)
    with pytest.raises(ValueError, match="text must be a str, got bytes"):
        BPETokenizer().train(b"bytes", 300)
    with pytest.raises(ValueError, match=r"ids must be token ids in \[0, 599\] \(the vocabulary\), got \[600\]"):
        trained.decode([600])
    with pytest.raises(ValueError, match="not valid Unicode"):
        trained.encode("lone surrogate \ud800")
    with pytest.raises(ValueError, match="text must be a str"):
        trained.encode(123)


# --- parity with Hugging Face `tokenizers` -------------------------------------------------------

def test_gpt2_pre_split_matches_tokenizers_bytelevel():
    from tokenizers import pre_tokenizers

    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok = BPETokenizer()
    for text in parallel_text("en")[:3] + ["Hello  world!! It's 2026, isn't it?\n\n  ok"]:
        ours = [piece.encode("utf-8") for piece in tok._chunks(text)]
        theirs = [piece for piece, _ in hf.pre_tokenize_str(text)]
        assert len(ours) == len(theirs)
        assert [len(p) for p in ours] == [len(t) for t in theirs]  # one mapped char per byte


def test_merges_equal_tokenizers_bpe_trainer():
    """On lower-case letters split at whitespace, both libraries order the initial tokens the same way
    (Hugging Face sorts its byte alphabet by code point, which agrees with byte order on letters), so
    their tie rules coincide and the merge lists must be identical, ties included."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = " ".join(re.findall(r"[a-z]+", " ".join(parallel_text("en")).lower()))
    ours = BPETokenizer(pattern=r"[a-z]+").train(text, 256 + 250)
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=256 + len(ours.merges), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    theirs = [m if isinstance(m, list) else m.split(" ") for m in json.loads(hf.to_str())["model"]["merges"]]
    mine = [[ours.vocab[a].decode(), ours.vocab[b].decode()] for a, b in ours.merges]
    assert ours.had_ties  # the comparison covers tie-breaking too
    assert mine == theirs
    word = "unhappiness"
    assert [ours.vocab[i].decode() for i in ours.encode(word)] == hf.encode(word).tokens


def test_had_ties_is_false_without_a_tie():
    assert not BPETokenizer(pattern=None).train("bxxxxxyyyba", 258).had_ties


def test_training_never_merges_special_token_text():
    tok = BPETokenizer(special_tokens=["<|endoftext|>"]).train("hello<|endoftext|>world<|endoftext|>" * 5, 300)
    assert not any(b"<|" in tok.vocab[i] or b"|>" in tok.vocab[i] for i in range(256, 256 + len(tok.merges)))


def test_a_set_of_allowed_specials_rejects_the_others():
    tok = BPETokenizer(special_tokens=["<|endoftext|>", "<|user|>"]).train("some text here", 260)
    assert tok.encode("a<|endoftext|>", allowed_special={"<|endoftext|>"})[-1] == tok.special_tokens["<|endoftext|>"]
    with pytest.raises(ValueError, match="<|user|>"):
        tok.encode("a<|user|>b", allowed_special={"<|endoftext|>"})
