"""Our byte-level BPE vs Hugging Face `tokenizers` on about 1 MB of English: training and encoding.

    python benchmarks/bpe_speed.py [--mb 1.0] [--vocab 4096]

Prints figures; asserts nothing. The text is the standard library's docstrings
(utils.corpus.stdlib_docstrings), so the exact numbers depend on the Python version.
"""

import argparse
import time

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from utils.bpe import BPETokenizer
from utils.corpus import stdlib_docstrings


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1.0, help="megabytes of text")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    args = parser.parse_args()
    text = stdlib_docstrings(int(args.mb * 1_000_000))
    n_bytes = len(text.encode("utf-8"))
    print(f"text: {n_bytes / 1e6:.2f} MB of standard-library docstrings; vocabulary {args.vocab}")

    t_ours, ours = best_of(lambda: BPETokenizer().train(text, args.vocab), repeats=1)

    def hf_train():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator([text], trainers.BpeTrainer(
            vocab_size=args.vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        return tok

    t_hf, hf = best_of(hf_train, repeats=1)
    print(f"train   ours {t_ours:6.2f} s   tokenizers {t_hf:6.2f} s   ratio {t_ours / t_hf:5.1f}x")

    def ours_encode():
        ours._cache.clear()  # cold cache: measure the algorithm, not the memo
        return ours.encode_ordinary(text)

    t_enc, ids = best_of(ours_encode)
    t_hf_enc, enc = best_of(lambda: hf.encode(text))
    paragraphs = text.split("\n\n")
    t_hf_batch, _ = best_of(lambda: hf.encode_batch(paragraphs))
    print(f"encode  ours {n_bytes / t_enc / 1e6:6.2f} MB/s   tokenizers {n_bytes / t_hf_enc / 1e6:6.2f} MB/s "
          f"(one string; time ratio ours/theirs {t_enc / t_hf_enc:.2f}), "
          f"{n_bytes / t_hf_batch / 1e6:6.2f} MB/s (encode_batch of paragraphs, ratio {t_enc / t_hf_batch:.1f})")
    print(f"tokens  ours {len(ids):,}   tokenizers {len(enc.ids):,}   characters per token (ours) {len(text) / len(ids):.2f}")
    assert ours.decode(ids) == text


if __name__ == "__main__":
    main()
