"""Instant feedback for the exercise notebooks, and the records the grader reads.

Each chapter has a module ``utils.checks.chNN`` whose check functions are decorated with
``@question(...)``. Calling one in a notebook runs the learner's code against the ``utils``
reference and prints a single line: a pass, or a hint that says what is probably wrong. The same
call also emits a small machine-readable record (MIME type ``CHECK_MIME``) in the cell's output,
which ``python -m utils.grade`` collects. Nothing here needs a server, so it works in Colab.

A check never raises: an exception in the learner's code, a stub that still raises
``NotImplementedError``, or an answer left as ``...`` is reported as a failed check.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from typing import Callable

__all__ = ["CHECK_MIME", "Question", "Fail", "question", "report", "questions_of", "is_unanswered", "as_array"]

CHECK_MIME = "application/vnd.llmcc.check+json"


@dataclass(frozen=True)
class Question:
    id: str  # "q1", "q2", ... in notebook order
    title: str  # shown by the grader
    points: int


class Fail(Exception):
    """Raised inside a check to fail it with a hint for the learner."""


def as_array(x, what: str):
    """The learner's result as a float NumPy array, or a Fail that names the usual mistakes."""
    import numpy as np

    if x is None:
        raise Fail(f"{what} returned None: did you forget `return`?")
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise Fail(f"{what} should return an array of numbers, got {type(x).__name__}") from None


def is_unanswered(value) -> bool:
    """True for the placeholder ``...`` that the exercise notebooks leave for short answers."""
    return value is Ellipsis


def report(q: Question, passed: bool, message: str) -> dict:
    """Print the one-line verdict and emit the grader's record. Returns the record."""
    mark = "PASS" if passed else "FAIL"
    line = f"{mark} {q.id} ({q.title}), {q.points if passed else 0}/{q.points} points" + (
        "" if passed and not message else f": {message}"
    )
    record = {"id": q.id, "passed": bool(passed), "points": q.points if passed else 0,
              "max_points": q.points, "message": message}
    try:
        from IPython import get_ipython
        from IPython.display import display

        in_ipython = get_ipython() is not None
    except ImportError:  # plain Python: no IPython display machinery
        in_ipython = False
    if in_ipython:
        display({"text/plain": line, CHECK_MIME: record}, raw=True)
    else:
        print(line)
    return record


def question(registry: dict, qid: str, title: str, points: int) -> Callable:
    """Register a check function under ``qid`` and wrap it so that it reports instead of raising.

    The wrapped function returns an optional success message, or raises ``Fail(hint)``.
    """
    q = Question(qid, title, points)
    if qid in registry:
        raise ValueError(f"question id {qid!r} is registered twice")
    registry[qid] = q

    def decorate(check: Callable) -> Callable:
        def run(*args, **kwargs) -> dict:
            if any(is_unanswered(a) for a in (*args, *kwargs.values())):
                return report(q, False, "not answered yet: replace the `...` with your answer")
            try:
                message = check(*args, **kwargs)
            except Fail as e:
                return report(q, False, str(e))
            except NotImplementedError:
                return report(q, False, "not implemented yet: replace `raise NotImplementedError` with your code")
            except Exception as e:  # the learner's code raised: say where, briefly
                frame = traceback.extract_tb(e.__traceback__)[-1]
                return report(q, False, f"your code raised {type(e).__name__}: {e} (line {frame.lineno})")
            return report(q, True, message or "")

        @functools.wraps(check)
        def wrapper(*args, **kwargs) -> None:
            # Returns None so that a notebook cell shows only the printed verdict; the record is
            # kept on the function for code that wants it (tests, the grader's own checks).
            wrapper.last_record = run(*args, **kwargs)

        wrapper.question = q
        wrapper.last_record = None
        return wrapper

    return decorate


def questions_of(module) -> list[Question]:
    """The questions a chapter's check module registers, in order."""
    return list(module.QUESTIONS.values())
