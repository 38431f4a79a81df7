"""Pretraining data, the world tokenizer, the exact cross-entropy and the stored reference model."""

import math
import random
from collections import Counter

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.pretraining import (
    CopyBatches,
    WorldBatches,
    evaluate_reference,
    exact_cross_entropy,
    fact_accuracy,
    gap_breakdown,
    load_reference,
    pack_row,
    per_position_loss,
    sentence_losses,
    template_probabilities,
    train_world_tokenizer,
    true_token_surprisal,
    world_contexts,
    world_tokenizer,
)
from utils.tiny_world import TEMPLATES, World


@pytest.fixture(scope="module")
def world():
    return World(0)


@pytest.fixture(scope="module")
def tok():
    return world_tokenizer()


def test_shipped_world_tokenizer_is_reproducible(tok):
    fresh = train_world_tokenizer()
    assert fresh.merges == tok.merges and fresh.special_tokens == tok.special_tokens
    assert tok.vocab_size == 512
    ids = tok.encode_ordinary("Ask Vogri and you learn that he is 1047.")
    digits = [tok.decode([i]) for i in ids[-5:-1]]
    assert digits == ["1", "0", "4", "7"]  # one token per digit
    assert tok.decode(ids) == "Ask Vogri and you learn that he is 1047."


def test_pack_row_example_and_shift():
    assert pack_row([[5, 6, 1], [7, 1], [8, 8, 1]], 0, 6) == ([0, 5, 6, 1, 7, 0], [5, 6, 1, 7, 1, -100], 2)
    rng = random.Random(0)
    for _ in range(200):
        sentences = [[rng.randint(1, 9) for _ in range(rng.randint(1, 5))] for _ in range(6)]
        x, y, n = pack_row(sentences, 0, 12)
        assert len(x) == len(y) == 12 and x[0] == 0
        used = sum(len(s) for s in sentences[:n])
        assert x[1: used] == [t for s in sentences[:n] for t in s][:-1] or used == 0
        assert y[:used] == [t for s in sentences[:n] for t in s]
        assert all(v == -100 for v in y[used:])
        assert n == len(sentences) or 1 + used + len(sentences[n]) > 13  # the next one did not fit


def test_world_batches_hold_whole_sentences_and_are_deterministic(world, tok):
    data = WorldBatches(world, tok, sentences_per_row=5, batch_size=8)
    x, y = data.get_batch("train", 5)
    assert x.shape == y.shape and x.shape[0] == 8 and x.shape[1] <= data.max_tokens and (x[:, 0] == data.bos).all()
    assert torch.equal(x, data.get_batch("train", 5)[0]) and not torch.equal(x, data.get_batch("train", 6)[0])
    assert not torch.equal(x, data.get_batch("val", 5)[0])
    true = {s for s, _ in world.all_sentences()}
    for row_x, row_y in zip(x, y):
        keep = row_y != -100
        n = int(keep.sum())
        assert keep[:n].all() and torch.equal(row_x[1:n], row_y[: n - 1])  # y is x shifted left
        text = tok.decode(row_y[keep].tolist())
        lines = text[:-1].split("\n")
        assert text.endswith("\n") and len(lines) == 5 and all(s in true for s in lines)
    with pytest.raises(ValueError, match="sentences_per_row must be an integer >= 1"):
        WorldBatches(world, tok, sentences_per_row=0, batch_size=2)
    with pytest.raises(ValueError, match="split must be"):
        data.get_batch("test", 0)


def test_rows_are_unbiased_at_every_place(world, tok):
    """Template frequencies are the world's at the start and at the end of a row (a "fill while it
    fits" packer fails this: long sentences pile up at the start of rows)."""
    data = WorldBatches(world, tok, sentences_per_row=6, batch_size=32)
    first_words = {t.split()[0]: p for t, p, _ in TEMPLATES if not t.startswith("{")}
    counts = {"first": Counter(), "last": Counter()}
    n = 0
    for step in range(60):
        _, y = data.get_batch("train", step)
        for row in y:
            lines = tok.decode(row[row != -100].tolist())[:-1].split("\n")
            counts["first"][lines[0].split()[0]] += 1
            counts["last"][lines[-1].split()[0]] += 1
            n += 1
    for place in counts:
        for word, p in first_words.items():  # "The capital ..." (0.30) and "Ask ..." (0.15)
            se = math.sqrt(p * (1 - p) / n)
            assert abs(counts[place][word] / n - p) < 5 * se, (place, word, counts[place][word] / n, p)


def test_batches_have_the_floor_as_their_true_loss(world, tok):
    """The true model's loss on the batches is the floor: the pipeline neither drops nor adds information."""
    probs = dict(world.all_sentences())
    data = WorldBatches(world, tok, sentences_per_row=6, batch_size=32)
    nats, tokens, per_row = 0.0, 0, []
    for step in range(40):
        _, y = data.get_batch("train", step)
        for row in y:
            keep = row[row != -100].tolist()
            sentences = tok.decode(keep)[:-1].split("\n")
            row_nats = sum(-math.log(probs[s]) for s in sentences)
            nats += row_nats
            tokens += len(keep)
            per_row.append(row_nats / len(keep))
    floor = world.entropy_per_token(tok.encode_ordinary)
    se = torch.tensor(per_row).std().item() / math.sqrt(len(per_row))
    assert abs(nats / tokens - floor) < 5 * se, (nats / tokens, floor, se)


def test_sentence_losses_match_the_model_on_the_whole_sequence(world, tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=512, n_layer=1, n_head=2, n_embd=32)).eval()
    context, sentence = "Vogri lives in Zankolo.\n", world.render(0, list(world.countries)[0])
    got = sentence_losses(model, tok, [sentence, sentence], context)
    ids = [tok.special_tokens["<|endoftext|>"]] + tok.encode_ordinary(context + sentence + "\n")
    n_context = 1 + len(tok.encode_ordinary(context))
    logits, _ = model(torch.tensor([ids[:-1]]))
    logp = torch.log_softmax(logits[0], -1)
    expected = -sum(logp[i - 1, ids[i]].item() for i in range(n_context, len(ids)))
    assert got.tolist() == pytest.approx([expected, expected], rel=1e-5)
    with pytest.raises(ValueError, match="must not be empty"):
        sentence_losses(model, tok, [])


def test_exact_cross_entropy_is_never_below_the_floor(world, tok):
    floor = world.entropy_per_token(tok.encode_ordinary)
    torch.manual_seed(0)
    untrained = GPT(GPTConfig(block_size=128, vocab_size=512, n_layer=1, n_head=2, n_embd=32))
    assert exact_cross_entropy(untrained, world, tok) > 5 * floor  # about log(512) per token
    reference, _ = load_reference()
    contexts = world_contexts(world, n=2, seed=0)
    ce = exact_cross_entropy(reference, world, tok, contexts)
    assert floor <= ce < 1.02 * floor
    gap = gap_breakdown(reference, world, tok, contexts)  # its two parts add up to the whole gap
    assert gap["certain"] + gap["uncertain"] == pytest.approx(ce - floor, abs=1e-6)
    assert 0.5 < gap["share_certain"] < 0.9
    assert sum(template_probabilities(reference, world, tok, contexts[0])) <= 1 + 1e-6
    surprisal = true_token_surprisal(world, tok)  # exact token-level truth adds up to the sentence entropy
    assert sum(p * sum(surprisal[s]) for s, p in world.all_sentences()) == pytest.approx(world.entropy_per_sentence())


def test_reference_model_reproduces_its_record(world, tok):
    model, info = load_reference()
    assert info["model_config"]["vocab_size"] == tok.vocab_size == model.config.vocab_size
    assert info["floor"] == pytest.approx(world.entropy_per_token(tok.encode_ordinary), abs=1e-12)
    assert evaluate_reference(model) == pytest.approx(info["eval_loss"], abs=1e-4)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert load_reference()[0] is not model  # a fresh copy each call: chapters may fine-tune it
    accuracy = fact_accuracy(model, world, tok)
    assert min(accuracy.values()) == 1.0  # it has memorised every fact of the world
    torch.manual_seed(0)
    assert max(fact_accuracy(GPT(model.config), world, tok).values()) < 0.2


def test_copy_batches_put_loss_on_the_copy_only(world, tok):
    data = CopyBatches(world, tok, block_size=32, max_names=6, batch_size=4)
    x, y = data.get_batch("train", 0)
    assert x.shape == y.shape == (4, 32)
    for row_x, row_y in zip(x, y):
        text = tok.decode(row_x.tolist()).replace("<|endoftext|>", "")
        listed = text.split(" =")[0]
        copied = tok.decode(row_y[row_y != -100].tolist())
        assert copied == " " + listed + "\n"


def test_per_position_loss(tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=512, n_layer=1, n_head=2, n_embd=32))
    x = torch.randint(0, 512, (3, 16))
    y = x.roll(-1, 1)
    y[:, -4:] = -100
    per_pos = per_position_loss(model, x, y)
    assert per_pos.shape == (16,) and torch.isnan(per_pos[-4:]).all()
    _, loss = model(x, y)
    assert per_pos[:-4].mean().item() == pytest.approx(loss.item(), rel=1e-5)


def test_small_config_fits_its_rows(world, tok):
    from utils.pretraining import SMALL_CONFIG, SMALL_SENTENCES_PER_ROW

    data = WorldBatches(world, tok, sentences_per_row=SMALL_SENTENCES_PER_ROW, batch_size=2)
    assert data.max_tokens <= SMALL_CONFIG.block_size and SMALL_CONFIG.vocab_size == tok.vocab_size


def test_fact_accuracy_is_greedy_generation(world, tok):
    """fact_accuracy checks all facts with one teacher-forced pass per length; it must agree with
    generating each fact greedily, on a model that gets some facts right and some wrong."""
    from utils.sft import load_sft_model
    from utils.tiny_world import FACT_SLOTS, TEMPLATES

    model = load_sft_model()[0]  # fine-tuning made it forget some of the world's sentences
    bos = tok.special_tokens["<|endoftext|>"]
    by_generation = {}
    for t, (template, _, kind) in enumerate(TEMPLATES):
        right = 0
        for subject in world.subjects(kind):
            sentence = world.render(t, subject)
            cut = sentence.rindex(" " + str(world.facts(kind, subject)[FACT_SLOTS[t]]))
            ids = [bos] + tok.encode_ordinary(sentence[:cut])
            target = tok.encode_ordinary(sentence[cut:])
            out = model.generate(torch.tensor([ids]), len(target), greedy=True)[0, len(ids):].tolist()
            right += out == target
        by_generation[template] = right / len(world.subjects(kind))
    assert 0 < min(by_generation.values()) < 1  # both outcomes occur
    model.train()
    assert fact_accuracy(model, world, tok) == by_generation  # called on a model in training mode ...
    assert model.training  # ... and the model's mode restored
