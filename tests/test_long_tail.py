"""The long-tailed world: Zipf subject frequencies, and an exact entropy floor that sampling confirms."""

import math
import random
from collections import Counter

import pytest

from utils.long_tail import ZipfWorld, zipf_probs
from utils.pretraining import WorldBatches, world_tokenizer
from utils.tiny_world import TEMPLATES, World


@pytest.fixture(scope="module")
def world():
    return ZipfWorld(seed=0, n_countries=60, n_people=240, exponent=1.2)


def test_zipf_probs_by_hand():
    assert zipf_probs(3, 1.0) == pytest.approx([6 / 11, 3 / 11, 2 / 11], abs=1e-15)
    assert zipf_probs(4, 0.0) == pytest.approx([0.25] * 4)
    p = zipf_probs(1000, 1.5)
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)
    assert p[0] / p[9] == pytest.approx(10 ** 1.5)  # rank 1 is 10^s times as common as rank 10


@pytest.mark.parametrize("bad", [-0.5, float("nan"), 5.0, True, "1"])
def test_bad_exponents_are_refused(bad):
    with pytest.raises(ValueError, match="exponent"):
        ZipfWorld(n_countries=3, n_people=3, exponent=bad)


def test_same_facts_as_world_and_same_seed_same_text(world):
    plain = World(seed=0, n_countries=60, n_people=240)
    assert world.countries == plain.countries and world.people == plain.people
    again = ZipfWorld(seed=0, n_countries=60, n_people=240, exponent=1.2)
    assert again.corpus(5, seed=1) == world.corpus(5, seed=1)


def test_sentence_probabilities_follow_zipf(world):
    sentences = dict(world.all_sentences())
    assert math.fsum(sentences.values()) == pytest.approx(1.0, abs=1e-12)
    countries = world.subjects("country")
    p_capital = [sentences[world.render(0, c)] for c in countries]
    assert p_capital == pytest.approx([TEMPLATES[0][1] * q for q in zipf_probs(len(countries), 1.2)])
    # sampling agrees: the most common country appears about p / p(rank 8) = 8^1.2 times as often
    rng = random.Random(5)
    counts = Counter(world.sample_sentence(rng) for _ in range(60_000))
    first, eighth = (counts[world.render(0, countries[r])] for r in (0, 7))
    assert first / eighth == pytest.approx(8 ** 1.2, rel=0.15)


def test_exponent_zero_has_the_uniform_worlds_entropy():
    flat = ZipfWorld(seed=0, n_countries=12, n_people=40, exponent=0.0)
    assert flat.entropy_per_sentence() == pytest.approx(World(seed=0).entropy_per_sentence(), abs=1e-12)
    # a long tail lowers the entropy: common subjects are easier to guess
    assert ZipfWorld(seed=0, n_countries=12, n_people=40, exponent=1.5).entropy_per_sentence() < \
        flat.entropy_per_sentence() - 0.3


def test_exact_entropy_matches_monte_carlo(world):
    probs = dict(world.all_sentences())
    rng = random.Random(123)
    n = 40_000
    surprisal = [-math.log(probs[world.sample_sentence(rng)]) for _ in range(n)]
    mean = math.fsum(surprisal) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in surprisal) / (n - 1))
    assert abs(mean - world.entropy_per_sentence()) < 5 * sd / math.sqrt(n)
    # the uniform world's formula would be far off for this world
    uniform = World(seed=0, n_countries=60, n_people=240).entropy_per_sentence()
    assert abs(mean - uniform) > 20 * sd / math.sqrt(n)


def test_batches_and_the_per_token_floor():
    world = ZipfWorld(seed=0, n_countries=60, n_people=240, exponent=1.2)
    tok = world_tokenizer()
    floor = world.entropy_per_token(tok.encode_ordinary)
    assert 0 < floor < World(seed=0, n_countries=60, n_people=240).entropy_per_token(tok.encode_ordinary)
    data = WorldBatches(world, tok, sentences_per_row=4, batch_size=8)
    x, y = data.get_batch("train", 0)
    assert x.shape == y.shape and x.shape[0] == 8
