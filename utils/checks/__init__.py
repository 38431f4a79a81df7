"""Instant feedback for the exercise notebooks, and the records the grader reads.

Each chapter has a module ``utils.checks.chNN`` whose check functions are decorated with
``@question(...)``. Calling one in a notebook runs the learner's code against the ``utils``
reference and prints a single line: a pass, or a hint that says what is probably wrong. The same
call also emits a small machine-readable record (MIME type ``CHECK_MIME``) in the cell's output,
which ``python -m utils.grade`` collects. Nothing here needs a server, so it works in Colab.

A check never raises: an exception in the learner's code, a stub that still raises
``NotImplementedError``, or an answer left as ``...`` is reported as a failed check. An exception
raised by the check's own code (no frame of the learner's code on the stack) is a bug in
``utils.checks``: it is reported as a *checker error*, with the file and line in ``utils``, and the
grader lists it apart from the learner's mistakes.

Checks call the learner's functions through ``call``, which passes copies of arrays, tensors and
containers: a correct answer that scales its input in place (``Q /= np.sqrt(d)``) must neither fail
nor corrupt the inputs of the next check.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import site
import sys
import sysconfig
import textwrap
import traceback
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CHECK_MIME", "Question", "Fail", "question", "report", "questions_of", "is_unanswered", "as_array",
           "call", "copy_arg", "as_number"]

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


def as_number(x, what: str) -> float:
    """The learner's answer as a float, or a Fail that says a number was expected."""
    import numpy as np

    if isinstance(x, (bool, str, bytes)) or x is None:  # np.asarray("0.4", dtype=float) would accept text
        raise Fail(f"{what} should be a number, got {x!r:.60}")
    try:
        value = float(np.asarray(x, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise Fail(f"{what} should be a number, got {type(x).__name__} {x!r:.60}") from None
    return value


def copy_arg(x):
    """A copy of an argument the learner's code could change in place: arrays, tensors (``clone``
    keeps the autograd graph, so gradients still reach the original), containers of them, and
    dataclass instances such as a ``GPTConfig``. Models and optimisers are passed as they are:
    questions about training steps ask the learner to change them."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.copy()
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(x, torch.Tensor):
            return x.clone()
        if isinstance(x, (torch.nn.Module, torch.optim.Optimizer)):
            return x
    if isinstance(x, list):
        return [copy_arg(v) for v in x]
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(copy_arg(v) for v in x)
    if isinstance(x, dict):
        return {k: copy_arg(v) for k, v in x.items()}
    if isinstance(x, set):
        return set(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return copy.deepcopy(x)
    return x


def call(fn, *args, **kwargs):
    """Call the learner's ``fn`` on copies of the arguments (see ``copy_arg``), so the check's fixtures stay intact."""
    return fn(*(copy_arg(a) for a in args), **{k: copy_arg(v) for k, v in kwargs.items()})


def is_unanswered(value) -> bool:
    """True for the placeholder ``...`` that the exercise notebooks leave for short answers."""
    return value is Ellipsis


def report(q: Question, passed: bool, message: str, checker_error: bool = False) -> dict:
    """Print the one-line verdict and emit the grader's record. Returns the record."""
    mark = "PASS" if passed else ("CHECKER ERROR" if checker_error else "FAIL")
    line = f"{mark} {q.id} ({q.title}), {q.points if passed else 0}/{q.points} points" + (
        "" if passed and not message else f": {message}"
    )
    # Wrapped to the book's code column (88 characters), continuation lines indented.
    line = textwrap.fill(line, 88, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
    record = {"id": q.id, "passed": bool(passed), "points": q.points if passed else 0,
              "max_points": q.points, "message": message}
    if checker_error:
        record["checker_error"] = True
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
            except Exception as e:
                return _report_exception(q, e, check, (*args, *kwargs.values()))
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


def _library_dirs() -> tuple[str, ...]:
    """Directories whose code is not the learner's: this package, the standard library, site-packages."""
    paths = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # utils/
    paths.update(v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib"))
    try:
        paths.update(site.getsitepackages() + [site.getusersitepackages()])
    except AttributeError:  # pragma: no cover - some embedded interpreters lack these
        pass
    return tuple(os.path.realpath(p) + os.sep for p in paths if p)


def _is_library_file(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    if filename.startswith("<"):  # "<ipython-input-...>", "<string>": code typed by someone, not a library
        return False
    return os.path.realpath(filename).startswith(_library_dirs())


def _code_of(answer):
    """The code object of a learner's function (plain function, lambda, method or partial), or None."""
    while isinstance(answer, functools.partial):
        answer = answer.func
    answer = getattr(answer, "__func__", answer)  # a bound method
    return getattr(answer, "__code__", None)


def _learner_line(frames, codes) -> int | None:
    """The line in the learner's code where the exception started, or None if their code is not on the stack.

    Frames from the first call of one of the learner's functions down are theirs; the innermost of
    them outside NumPy, PyTorch and the standard library is the line to show."""
    start = next((i for i, (frame, _) in enumerate(frames) if frame.f_code in codes), None)
    if start is None:
        return None
    own = [lineno for frame, lineno in frames[start:] if not _is_library_file(frame.f_code.co_filename)]
    return own[-1] if own else frames[start][1]


def _report_exception(q: Question, e: Exception, check: Callable, answers: tuple) -> dict:
    """Blame the learner only if their code is on the stack; otherwise the check itself is broken."""
    frames = list(traceback.walk_tb(e.__traceback__))[1:]  # [0] is `run` calling the check
    codes = {c for c in map(_code_of, answers) if c is not None}
    line = _learner_line(frames, codes)
    if line is None:  # an answer that is not a Python function (a class, a builtin): any frame outside the check
        check_file = check.__code__.co_filename
        others = [n for f, n in frames if f.f_code.co_filename != check_file and not _is_library_file(f.f_code.co_filename)]
        line = others[-1] if others else None
    if line is not None:
        return report(q, False, f"your code raised {type(e).__name__}: {e} (line {line})")
    frame, lineno = frames[-1] if frames else (None, None)
    place = f" at {os.path.basename(frame.f_code.co_filename)}:{lineno}" if frame is not None else ""
    return report(q, False, f"checker error: the check itself raised {type(e).__name__}: {e}{place}. This is a bug "
                            "in utils.checks, not a verdict on your answer; please report it", checker_error=True)


def questions_of(module) -> list[Question]:
    """The questions a chapter's check module registers, in order."""
    return list(module.QUESTIONS.values())
