"""The course's tiny world: a generated corpus whose true entropy is known (chapter 8; used from then on).

A seeded ``World`` invents countries (each with one capital and one export) and people (each with
a home country, a job and an age). Documents are sequences of sentences; each sentence is drawn
independently:

    1. pick a template with its stated probability (``TEMPLATES``);
    2. pick its subject uniformly (a country or a person);
    3. fill in the subject's attributes, which the world fixes: no randomness.

Step 3 is what a model can only get right by memorising the world's facts (chapters 6 and 11);
steps 1 and 2 are irreducible randomness. Because the choices are independent and every choice
gives a different sentence (``World.check_injective`` verifies this), the entropy of a document is
exactly ``n_sentences * H(sentence)`` with

    H(sentence) = H(template) + sum_t p(t) * log(number of subjects of template t)   (nats)

and the best possible average loss per token of any model is that entropy divided by the expected
number of tokens (``entropy_per_token``). Chapter 8 compares a trained model's loss with it.

Same seed, same world and same text on every machine (Python's ``random.Random``, no hashing).
``addition_example`` writes multi-digit additions with or without the column-by-column steps
(chapters 11 and 13). ``World.instruction_pairs`` asks questions about the facts and answers
them (chapter 9), ``World.preference_pair`` writes two answers and says which one a stated rule
prefers (chapter 10), and ``World.few_shot_prompt`` states a relation only through examples
(chapter 12).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

from .validation import check_choice, check_int, check_seed

__all__ = ["TEMPLATES", "QUESTIONS", "RELATIONS", "PREFERENCE_RULE", "FACT_SLOTS", "World", "DOC_SEPARATOR", "addition_example",
           "addition_completion", "parse_answer"]

#: (template, probability, subject kind). Every template starts with different words, so no two
#: templates can produce the same sentence.
TEMPLATES: list[tuple[str, float, str]] = [
    ("The capital of {country} is {capital}.", 0.30, "country"),
    ("{country} exports {export}.", 0.20, "country"),
    ("{person} works as a {job}.", 0.20, "person"),
    ("{person} lives in {home}.", 0.15, "person"),
    ("Ask {person} and you learn that {pronoun} is {age}.", 0.15, "person"),
]
#: Questions about each fact: (question, template index whose sentence answers it, short answer).
#: The short answer names the fact without repeating the subject ("Its capital is Kaloville.").
QUESTIONS: list[tuple[str, int, str]] = [
    ("What is the capital of {country}?", 0, "Its capital is {capital}."),
    ("What does {country} export?", 1, "It exports {export}."),
    ("What is the job of {person}?", 2, "{Pronoun} works as a {job}."),
    ("Where does {person} live?", 3, "{Pronoun} lives in {home}."),
    ("How old is {person}?", 4, "{Pronoun} is {age}."),
]
#: Relations for few-shot prompts: name -> (subject kind, attribute).
RELATIONS: dict[str, tuple[str, str]] = {
    "capital": ("country", "capital"),
    "export": ("country", "export"),
    "job": ("person", "job"),
    "home": ("person", "home"),
}
PREFERENCE_RULE = ("The preferred answer is true in the world and is a complete sentence; the other answer "
                   "states a false fact, or gives the fact as a bare word without a sentence.")
#: The fact each template states, in template order.
FACT_SLOTS = ["capital", "export", "job", "home", "age"]
DOC_SEPARATOR = "\n"  # between sentences; documents are joined with a blank line

_SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vo", "su", "bel", "dor", "fen", "gri", "hal", "jun", "ko", "nar",
              "pel", "quo", "ris", "sal", "tor", "ul", "ven", "wil", "yas", "zan"]
_JOBS = ["baker", "pilot", "farmer", "teacher", "doctor", "painter", "sailor", "miner", "weaver", "judge"]
_EXPORTS = ["tea", "salt", "wool", "copper", "rice", "silk", "timber", "glass", "honey", "olives"]


@lru_cache(maxsize=1)
def _all_names() -> frozenset:
    """Every name ``World`` can draw: 2 or 3 syllables, 16,250 in all (no two spellings coincide)."""
    pairs = [a + b for a in _SYLLABLES for b in _SYLLABLES]
    return frozenset(pairs) | frozenset(p + c for p in pairs for c in _SYLLABLES)


def _entropy(probs) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


@dataclass
class World:
    """A small invented world. ``World(seed=0)`` is the course's reference world."""

    seed: int = 0
    n_countries: int = 12
    n_people: int = 40
    countries: dict = field(init=False)  # name -> {"capital": ..., "export": ...}
    people: dict = field(init=False)  # name -> {"home": ..., "job": ..., "age": ..., "pronoun": ...}

    def __post_init__(self):
        seed = check_seed(self.seed)  # None would seed from the clock: a different world on every run
        check_int(self.n_countries, "n_countries", minimum=1)
        check_int(self.n_people, "n_people", minimum=1)
        needed = 2 * self.n_countries + self.n_people  # countries, capitals and people need distinct names
        if needed > len(_all_names()):
            raise ValueError(f"2 * n_countries + n_people must be at most {len(_all_names()):,} (the distinct names "
                             f"of 2 or 3 syllables), got 2 * {self.n_countries} + {self.n_people} = {needed:,}")
        total = sum(p for _, p, _ in TEMPLATES)
        if abs(total - 1) > 1e-12:
            raise ValueError(f"template probabilities must sum to 1, they sum to {total}")
        rng = random.Random(seed)  # an int: random.Random refuses NumPy integers
        names = self._unique_names(rng, self.n_countries * 2 + self.n_people)
        country_names = names[: self.n_countries]
        capitals = names[self.n_countries: 2 * self.n_countries]
        person_names = names[2 * self.n_countries:]
        self.countries = {c: {"capital": cap.capitalize() + "ville", "export": rng.choice(_EXPORTS)}
                          for c, cap in zip(country_names, capitals)}
        self.people = {p: {"home": rng.choice(country_names), "job": rng.choice(_JOBS), "age": rng.randint(18, 90),
                           "pronoun": rng.choice(["she", "he"])} for p in person_names}

    @staticmethod
    def _unique_names(rng: random.Random, n: int) -> list[str]:
        """n distinct random names (n <= len(_all_names()), checked by the caller: more would loop forever)."""
        names: list[str] = []
        seen: set[str] = set()  # a set, so that 16,000 names take a second rather than minutes
        while len(names) < n:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
            if name not in seen:
                seen.add(name)
                names.append(name)
        return names

    # -- sentences -------------------------------------------------------------------------------
    def subjects(self, kind: str) -> list[str]:
        return list(self.countries) if kind == "country" else list(self.people)

    def render(self, template_index: int, subject: str) -> str:
        """The sentence for one template and subject; every other slot is fixed by the world."""
        template, _, kind = TEMPLATES[template_index]
        if kind == "country":
            return template.format(country=subject, **self.countries[subject])
        return template.format(person=subject, **self.people[subject])

    def all_sentences(self) -> list[tuple[str, float]]:
        """Every possible sentence with its probability (they sum to 1)."""
        out = []
        for t, (_, p, kind) in enumerate(TEMPLATES):
            subs = self.subjects(kind)
            out.extend((self.render(t, s), p / len(subs)) for s in subs)
        return out

    def check_injective(self) -> None:
        """Raise if two different choices give the same sentence (the entropy formula needs this)."""
        sentences = [s for s, _ in self.all_sentences()]
        if len(set(sentences)) != len(sentences):
            raise ValueError("two different choices produce the same sentence; the entropy formula would be wrong")

    def sample_sentence(self, rng: random.Random) -> str:
        t = rng.choices(range(len(TEMPLATES)), weights=[p for _, p, _ in TEMPLATES])[0]
        return self.render(t, rng.choice(self.subjects(TEMPLATES[t][2])))

    def document(self, rng: random.Random, n_sentences: int = 4) -> str:
        check_int(n_sentences, "n_sentences", minimum=1)
        return DOC_SEPARATOR.join(self.sample_sentence(rng) for _ in range(n_sentences))

    def corpus(self, n_documents: int, seed: int = 0, n_sentences: int = 4) -> list[str]:
        """``n_documents`` documents; the same seed gives the same text."""
        check_int(n_documents, "n_documents", minimum=0)
        rng = random.Random(check_seed(seed))
        return [self.document(rng, n_sentences) for _ in range(n_documents)]

    def facts(self, kind: str, subject: str) -> dict:
        return self.countries[subject] if kind == "country" else self.people[subject]

    # -- instructions, preferences and few-shot prompts (chapters 9, 10, 12) ----------------------
    def instruction_pairs(self, rng: random.Random, n: int, subjects: set | None = None,
                          style: str = "sentence") -> list[tuple[str, str]]:
        """``n`` (question, answer) pairs about the world's facts.

        ``style="sentence"``: the answer is the world's sentence for the fact, e.g.
        ("How old is Zanlo?", "Ask Zanlo and you learn that he is 47."). ``style="short"``: the
        answer does not repeat the subject, e.g. "He is 47." (chapter 9). ``subjects`` restricts
        the questions to those subjects (to hold some out). The random choices do not depend on
        the style.
        """
        check_choice(style, "style", ("sentence", "short"))
        check_int(n, "n", minimum=0)
        out = []
        while len(out) < n:
            question, t, short = rng.choice(QUESTIONS)
            kind = TEMPLATES[t][2]
            pool = [s for s in self.subjects(kind) if subjects is None or s in subjects]
            if not pool:
                raise ValueError(f"no {kind} among the given subjects; pass subjects of both kinds or None")
            subject = rng.choice(pool)
            facts = self.facts(kind, subject)
            if style == "sentence":
                answer = self.render(t, subject)
            else:
                answer = short.format(Pronoun=facts.get("pronoun", "it").capitalize(), **facts)
            out.append((question.format(**{kind: subject}), answer))
        return out

    def preference_pair(self, rng: random.Random, style: str = "sentence", subjects: set | None = None) -> dict:
        """A question with a preferred and a rejected answer under ``PREFERENCE_RULE``.

        The rejected answer is either the same answer with a false fact (``reason="false"``) or
        the true fact as a bare word (``reason="bare"``), with equal probability. ``style`` is
        that of ``instruction_pairs``: "sentence" answers with the world's sentence, "short"
        with the short answer of chapter 9 ("Its capital is Miyasville."). ``subjects``
        restricts the questions to those subjects. The random choices do not depend on the style.
        """
        if style not in ("sentence", "short"):
            raise ValueError(f"style must be 'sentence' or 'short', got {style!r}")
        question, t, short = rng.choice(QUESTIONS)
        template, _, kind = TEMPLATES[t]
        pool = [s for s in self.subjects(kind) if subjects is None or s in subjects]
        if not pool:
            raise ValueError(f"no {kind} among the given subjects; pass subjects of both kinds or None")
        subject = rng.choice(pool)
        slot = FACT_SLOTS[t]
        true = self.facts(kind, subject)
        pronoun = true.get("pronoun", "it").capitalize()
        render = (lambda f: template.format(**f)) if style == "sentence" else (lambda f: short.format(Pronoun=pronoun, **f))
        chosen = render({**true, kind: subject})
        if rng.random() < 0.5:
            values = sorted({str(self.facts(kind, k)[slot]) for k in self.subjects(kind)} - {str(true[slot])})
            wrong = rng.choice(values)
            rejected, reason = render({**true, slot: wrong, kind: subject}), "false"
        else:
            rejected, reason = f"{true[slot]}.", "bare"
        return {"prompt": question.format(**{kind: subject}), "chosen": chosen, "rejected": rejected, "reason": reason}

    def questions(self, subjects: set | None = None) -> list[tuple[str, str]]:
        """Every (question, short answer) pair of ``QUESTIONS`` about ``subjects`` (all if None), in a fixed order."""
        out = []
        for question, t, short in QUESTIONS:
            kind = TEMPLATES[t][2]
            for subject in self.subjects(kind):
                if subjects is None or subject in subjects:
                    facts = self.facts(kind, subject)
                    out.append((question.format(**{kind: subject}),
                                short.format(Pronoun=facts.get("pronoun", "it").capitalize(), **facts)))
        return out

    def few_shot_prompt(self, rng: random.Random, relation: str, n_shots: int,
                        wrong_labels: bool = False) -> tuple[str, str]:
        """(prompt, answer): ``n_shots`` lines "subject -> value" of one relation, then a query.

        The relation is never named; only the examples show it. ``wrong_labels=True`` gives each
        example the value of a random other subject (Min et al., 2022 test this on large models).
        Example (capital, 2 shots): "Kalo -> Kaloville\nVengri -> Rafenrisville\nQuo ->", " Quoville"
        """
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {sorted(RELATIONS)}, got {relation!r}")
        kind, attribute = RELATIONS[relation]
        pool = self.subjects(kind)
        check_int(n_shots, "n_shots", minimum=0, maximum=len(pool) - 1)
        chosen = rng.sample(pool, n_shots + 1)
        lines = []
        for subject in chosen[:-1]:
            source = rng.choice([s for s in pool if s != subject]) if wrong_labels else subject
            lines.append(f"{subject} -> {self.facts(kind, source)[attribute]}")
        query = chosen[-1]
        lines.append(f"{query} ->")
        return "\n".join(lines), f" {self.facts(kind, query)[attribute]}"

    def copy_document(self, rng: random.Random, n_names: int) -> tuple[str, str]:
        """(list, copy): ``n_names`` random people's names, then " =" and the same names again.

        The copy is fully determined by the list, so a model can predict it only by looking back
        as far as the list is long (chapter 8's context-length experiment; induction heads in
        chapter 12). Example: ("Zanlo Vogri =", " Zanlo Vogri\n").
        """
        check_int(n_names, "n_names", minimum=1)
        names = [rng.choice(list(self.people)) for _ in range(n_names)]
        return " ".join(names) + " =", " " + " ".join(names) + "\n"

    # -- entropy ---------------------------------------------------------------------------------
    def entropy_per_sentence(self) -> float:
        """H(sentence) in nats: template choice plus uniform subject choice; facts add nothing."""
        self.check_injective()
        return _entropy(p for _, p, _ in TEMPLATES) + sum(
            p * math.log(len(self.subjects(kind))) for _, p, kind in TEMPLATES)

    def entropy_per_document(self, n_sentences: int = 4) -> float:
        """Sentences are independent, so entropies add (nats)."""
        return n_sentences * self.entropy_per_sentence()

    def expected_tokens_per_sentence(self, encode) -> float:
        """Exact expected token count of one sentence plus its separator, under ``encode`` (a tokenizer)."""
        return sum(p * len(encode(s + DOC_SEPARATOR)) for s, p in self.all_sentences())

    def entropy_per_token(self, encode) -> float:
        """The lowest average loss per token any model can reach on this world's text (nats/token).

        Total entropy divided by the expected number of tokens. Assumes a sentence's tokens do not
        depend on its neighbours, true for a tokenizer that pre-splits at the newline (GPT-2's regex).
        """
        return self.entropy_per_sentence() / self.expected_tokens_per_sentence(encode)


# --- arithmetic (chapters 11 and 13) ------------------------------------------------------------

def addition_example(rng: random.Random, n_digits: int, steps: bool) -> tuple[str, str]:
    """(prompt, completion) for adding two random ``n_digits``-digit numbers.

    Without steps the completion is just the sum; with steps it first writes every column, right to
    left, as ``digit+digit+carry=total``, then the sum after ``so``. The steps give a model more
    tokens, and so more computation, before it must commit to each digit of the answer.

    Example (steps=True):  "47+85=" -> "7+5+0=12;4+8+1=13;so 132"
    Example (steps=False): "47+85=" -> "132"
    """
    check_int(n_digits, "n_digits", minimum=1)
    low = 10 ** (n_digits - 1) if n_digits > 1 else 0
    a, b = rng.randint(low, 10**n_digits - 1), rng.randint(low, 10**n_digits - 1)
    return f"{a}+{b}=", addition_completion(a, b, steps)


def addition_completion(a: int, b: int, steps: bool) -> str:
    """The completion of "a+b=" for two numbers of the same number of digits: the sum, or with
    ``steps`` every column right to left as ``digit+digit+carry=total``, then ``so`` and the sum."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)) or a < 0 or b < 0 \
            or len(str(a)) != len(str(b)):
        raise ValueError(f"a and b must be non-negative integers with the same number of digits, got {a!r} and {b!r}")
    if not steps:
        return str(a + b)
    columns, carry = [], 0
    for x, y in zip(map(int, str(a)[::-1]), map(int, str(b)[::-1])):
        total = x + y + carry
        columns.append(f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return ";".join(columns) + f";so {a + b}"


def parse_answer(completion: str) -> int | None:
    """The number a completion ends with (after "so " if there are steps), or None if there is none."""
    import re

    match = re.search(r"(?:so )?(\d+)\s*$", completion)
    return int(match.group(1)) if match else None
