"""The tiny world: deterministic, and its exact entropy agrees with sampling."""

import math
import random
from collections import Counter

import pytest

from utils.course_tokenizers import course_tokenizer
from utils.tiny_world import TEMPLATES, World, addition_example, parse_answer


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


def test_same_seed_same_world_and_text(world):
    again = World(seed=0)
    assert again.countries == world.countries and again.people == world.people
    assert again.corpus(5, seed=1) == world.corpus(5, seed=1)
    assert World(seed=1).countries != world.countries
    assert world.corpus(5, seed=1) != world.corpus(5, seed=2)


def test_sentence_distribution_is_complete_and_injective(world):
    sentences = world.all_sentences()
    assert math.isclose(sum(p for _, p in sentences), 1.0)
    world.check_injective()
    assert len(sentences) == 2 * world.n_countries + 3 * world.n_people


def test_exact_entropy_by_hand(world):
    h_template = -sum(p * math.log(p) for _, p, _ in TEMPLATES)
    h_subject = 0.5 * math.log(12) + 0.5 * math.log(40)  # country templates 0.30 + 0.20, person 0.50
    assert world.entropy_per_sentence() == pytest.approx(h_template + h_subject, abs=1e-12)
    assert world.entropy_per_document(4) == pytest.approx(4 * world.entropy_per_sentence())


def test_exact_entropy_matches_monte_carlo(world):
    probs = dict(world.all_sentences())
    rng = random.Random(123)
    n = 40_000
    samples = [world.sample_sentence(rng) for _ in range(n)]
    # unbiased: the average surprisal of samples, within 5 standard errors
    surprisal = [-math.log(probs[s]) for s in samples]
    mean = sum(surprisal) / n
    var = sum((x - mean) ** 2 for x in surprisal) / (n - 1)
    assert abs(mean - world.entropy_per_sentence()) < 5 * math.sqrt(var / n)
    # and the plug-in estimate from frequencies alone, which knows nothing of the generator
    counts = Counter(samples)
    plug_in = -sum(c / n * math.log(c / n) for c in counts.values())
    assert abs(plug_in - world.entropy_per_sentence()) < 0.02
    # a wrong formula (ignoring the template choice) would be far off
    assert abs(plug_in - (world.entropy_per_sentence() - 1.0)) > 0.5


def test_entropy_per_token_uses_exact_expected_lengths(world):
    tok = course_tokenizer()
    encode = lambda s: tok.encode(s, allowed_special="none")
    expected = world.expected_tokens_per_sentence(encode)
    rng = random.Random(7)
    sample = [len(encode(world.sample_sentence(rng) + "\n")) for _ in range(20_000)]
    assert abs(sum(sample) / len(sample) - expected) < 0.1
    assert world.entropy_per_token(encode) == pytest.approx(world.entropy_per_sentence() / expected)
    # per-sentence tokens add up to the document's tokens (so the per-token floor is exact)
    doc = world.corpus(1, seed=3)[0]
    assert len(encode(doc + "\n")) == sum(len(encode(s + "\n")) for s in doc.split("\n"))


def test_bad_worlds():
    with pytest.raises(ValueError, match="must be >= 1"):
        World(n_people=0)


@pytest.mark.parametrize("steps", [False, True])
def test_addition_examples_are_correct(steps):
    rng = random.Random(0)
    for n_digits in (1, 2, 3, 5):
        for _ in range(200):
            prompt, completion = addition_example(rng, n_digits, steps)
            a, b = map(int, prompt.rstrip("=").split("+"))
            assert len(str(a)) == len(str(b)) == n_digits or n_digits == 1
            assert parse_answer(completion) == a + b
            if steps:
                columns = completion.split(";")[:-1]
                assert len(columns) == n_digits
                carry = 0
                for column, (x, y) in zip(columns, zip(str(a)[::-1], str(b)[::-1])):
                    lhs, total = column.split("=")
                    assert lhs == f"{x}+{y}+{carry}" and int(total) == int(x) + int(y) + carry
                    carry = int(total) // 10


def test_addition_known_answer_and_errors():
    class Fixed(random.Random):
        def __init__(self):
            super().__init__(0)
            self.values = iter([47, 85])

        def randint(self, a, b):
            return next(self.values)

    assert addition_example(Fixed(), 2, steps=True) == ("47+85=", "7+5+0=12;4+8+1=13;so 132")
    assert parse_answer("no number here") is None
    with pytest.raises(ValueError, match="n_digits must be an integer >= 1"):
        addition_example(random.Random(0), 0, steps=False)
