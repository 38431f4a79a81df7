"""The tiny world: deterministic, and its exact entropy agrees with sampling."""

import math
import random
from collections import Counter

import pytest

from utils.course_tokenizers import course_tokenizer
from utils.tiny_world import TEMPLATES, World, addition_completion, addition_example, parse_answer


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
    with pytest.raises(ValueError, match="n_people must be an integer >= 1, got 0"):
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
    assert addition_completion(47, 85, True) == "7+5+0=12;4+8+1=13;so 132" and addition_completion(5, 7, False) == "12"
    with pytest.raises(ValueError, match="same number of digits"):
        addition_completion(999, 1, True)
    with pytest.raises(ValueError, match="n_digits must be an integer >= 1"):
        addition_example(random.Random(0), 0, steps=False)


def test_instruction_pairs_answer_with_true_sentences(world):
    true = {s for s, _ in world.all_sentences()}
    rng = random.Random(0)
    pairs = world.instruction_pairs(rng, 300)
    assert len(pairs) == 300 and all(answer in true for _, answer in pairs)
    assert len({q for q, _ in pairs}) > 100 and all(q.endswith("?") for q, _ in pairs)
    held_in = set(list(world.countries)[:6] + list(world.people)[:20])
    for question, answer in world.instruction_pairs(rng, 200, subjects=held_in):
        assert any(s in question and s in answer for s in held_in)
    with pytest.raises(ValueError, match="no person among the given subjects"):
        world.instruction_pairs(random.Random(0), 50, subjects=set(world.countries))


def test_preference_pairs_follow_the_stated_rule(world):
    true = {s for s, _ in world.all_sentences()}
    rng = random.Random(1)
    reasons = Counter()
    for _ in range(400):
        pair = world.preference_pair(rng)
        reasons[pair["reason"]] += 1
        assert pair["chosen"] in true and pair["rejected"] not in true and pair["chosen"] != pair["rejected"]
        if pair["reason"] == "false":  # same sentence shape, one fact changed
            assert len(pair["rejected"].split()) == len(pair["chosen"].split())
        else:
            assert len(pair["rejected"].split()) == 1 and pair["rejected"][:-1] in pair["chosen"]
    assert 150 < reasons["false"] < 250


def test_few_shot_prompts(world):
    rng = random.Random(2)
    prompt, answer = world.few_shot_prompt(rng, "capital", 3)
    lines = prompt.split("\n")
    assert len(lines) == 4 and lines[-1].endswith(" ->")
    for line in lines[:-1]:
        country, capital = line.split(" -> ")
        assert world.countries[country]["capital"] == capital
    assert answer == " " + world.countries[lines[-1][:-3]]["capital"]
    assert world.few_shot_prompt(rng, "job", 0)[0].count("\n") == 0
    wrong = [world.few_shot_prompt(random.Random(i), "capital", 5, wrong_labels=True)[0] for i in range(20)]
    mismatched = sum(world.countries[c]["capital"] != v for p in wrong for c, v in
                     (line.split(" -> ") for line in p.split("\n")[:-1]))
    assert mismatched == 100  # every example is wrong: capitals are unique
    with pytest.raises(ValueError, match="relation must be one of"):
        world.few_shot_prompt(rng, "age", 2)
    with pytest.raises(ValueError, match="n_shots must be an integer in"):
        world.few_shot_prompt(rng, "capital", 12)


def test_copy_documents(world):
    listed, copied = world.copy_document(random.Random(3), 4)
    assert listed.endswith(" =") and listed[:-2].split() == copied.split() and len(copied.split()) == 4
    with pytest.raises(ValueError, match="n_names"):
        world.copy_document(random.Random(3), 0)


def test_short_answers_state_the_fact_without_the_subject(world):
    long = world.instruction_pairs(random.Random(4), 100)
    short = world.instruction_pairs(random.Random(4), 100, style="short")
    for (q1, sentence), (q2, answer) in zip(long, short):
        assert q1 == q2  # the same questions: the style does not change the random choices
        assert sentence.rstrip(".").split()[-1] == answer.rstrip(".").split()[-1]  # the same fact
        assert not any(name in answer for name in list(world.people) + list(world.countries)
                       if name in q2 and name not in sentence.split()[-1])
    with pytest.raises(ValueError, match="style must be"):
        world.instruction_pairs(random.Random(0), 1, style="long")
