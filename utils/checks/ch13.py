"""Checks for the chapter 13 exercises: chain of thought.

Usage in the notebook::

    from utils.checks import ch13 as check
    check.write_steps(write_steps)
"""

from __future__ import annotations

import random

from ..arithmetic import majority_vote
from ..tiny_world import addition_completion, addition_example, parse_answer
from . import Fail, as_number, call, question

QUESTIONS: dict = {}


@question(QUESTIONS, "q1", "write the steps of an addition", points=3)
def write_steps(fn):
    for a, b in [(47, 85), (5, 7), (12345, 67890), (0, 0), (500, 500)]:
        expected = addition_completion(a, b, True)
        got = call(fn, a, b)
        if got is None:
            raise Fail("write_steps returned None: did you forget `return`?")
        if got == expected.replace("+0=", "=", 1) and "+0=" in expected:
            raise Fail("write the carry in every column, also the first one: '7+5+0=12'")
        if got != expected:
            raise Fail(f"for {a}+{b}: expected {expected!r}, got {got!r}; columns right to left as "
                       "'digit+digit+carry=total' joined by ';', then ';so ' and the sum")
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 6)
        prompt, expected = addition_example(rng, n, True)
        a, b = (int(v) for v in prompt[:-1].split("+"))
        got = call(fn, a, b)
        if got != expected:
            raise Fail(f"for {a}+{b}: expected {expected!r}, got {got!r}")
    return "the same steps the steps model was trained on"


@question(QUESTIONS, "q2", "read the final answer", points=2)
def final_answer(fn):
    cases = {"7+5+0=12;4+8+1=13;so 132": 132, "132": 132, "6+0+0=6;so 6": 6, "": None, "so": None,
             "7+5+0=12;4+8+1=13;so ": None, "1406\n": 1406, "3+4+0=7;so 17": 17}
    for text, expected in cases.items():
        got = call(fn, text)
        if expected is None and got is not None:
            raise Fail(f"for {text!r} there is no final number: return None, got {got!r}")
        if expected is not None and got != expected:
            hint = " (that is a number from the steps, not the final one)" if got in (12, 13, 7) else ""
            raise Fail(f"for {text!r}: expected {expected}, got {got!r}{hint}")
        if got is not None and not isinstance(got, int):
            raise Fail(f"return an int, got {type(got).__name__}")
    assert all(parse_answer(t) == e for t, e in cases.items())
    return "the number at the end, after 'so ' if there are steps"


@question(QUESTIONS, "q3", "the majority vote", points=2)
def majority(fn):
    cases = [[3, 3, 5], [5, 3, 3], [None, None, 7], [None, None], [1, 2, 2, 1], [2, 1, 1, 2], [9], [4, None, 4, 8, 8]]
    for answers in cases:
        expected = majority_vote(answers)
        got = call(fn, answers)
        if got is None and expected is not None:
            raise Fail(f"for {answers}: expected {expected}, got None" + (
                "; None (an unreadable answer) is not a vote" if None in answers else ""))
        if got != expected:
            tie = len(set(a for a in answers if a is not None)) > 1 and got in answers
            raise Fail(f"for {answers}: expected {expected}, got {got}" + (
                "; on a tie take the answer that was seen first" if tie else ""))
    return "the most common readable answer, ties to the first seen"


@question(QUESTIONS, "q4", "accuracy of self-consistency", points=2)
def vote_accuracy(fn):
    samples = [[132, 131, 132, 132, None], [77, 78, 78, 77, 78], [None, 5, None, 6, 6], [10, 10, 11, 11, 12]]
    truths = [132, 78, 6, 11]
    for k in (1, 3, 5):
        expected = sum(majority_vote(row[:k]) == t for row, t in zip(samples, truths)) / len(truths)
        got = call(fn, samples, truths, k)
        if got is None:
            raise Fail("vote_accuracy returned None: did you forget `return`?")
        got = as_number(got, f"vote_accuracy(samples, truths, {k})")
        right = expected * len(truths)  # the count of questions right with k samples
        if abs(got - right) < 1e-9 and abs(got - expected) > 1e-9:
            raise Fail(f"with k={k} you returned {got:g}, the NUMBER of questions answered right; return the share: "
                       "divide by the number of questions")
        if abs(got - expected) > 1e-9:
            raise Fail(f"with k={k}: expected {expected}, got {got}; vote over the FIRST k samples of each question")
    return "majority over the first k paths, then the share of questions right"
