"""Plan what goes into a fixed context window (chapter 3, "Context budgets").

A model's context window is one budget of tokens shared by everything in the prompt *and* the
answer it will write. ``plan_context`` takes the parts of a request and decides what fits:

    system prompt      always kept (the application's instructions)
    question           always kept; never trimmed, never dropped
    answer reserve     tokens kept free for the reply; nothing may use them
    evidence chunks    retrieved text with relevance scores: ranked, weak ones dropped, the rest
                       chosen best first; a chunk that does not fit whole is cut to the room left
                       (if at least ``min_chunk_tokens`` remain) or dropped. In the prompt the best
                       chunk comes last, next to the question: models use the ends of a long
                       context better than its middle (Liu et al., TACL 2024)
    history turns      earlier conversation: newest first; older turns that do not fit are dropped,
                       or replaced by one short summary (``history_strategy="summarise"``) of as
                       many of them as fit, the most recent first; turns that fit are never traded
                       for a summary, so summarising keeps at least what dropping keeps

It refuses an impossible budget (system + question + reserve > window) with a ``ValueError``
rather than silently dropping the question. **The guarantee:** the assembled prompt,
``plan.prompt()``, encodes to at most ``window - answer_reserve`` tokens with the tokenizer used.
Every decision counts the assembled text, not the sum of the parts: BPE can merge across the
join of two parts (a system prompt ending in a newline followed by "\n" is enough), so the parts'
counts need not add up. A cut chunk never ends in half a character (UTF-8 bytes of one character
can belong to different tokens). Every decision is recorded with its reason, and
``BudgetPlan.report()`` prints them. Token counts come from a real tokenizer: the course's BPE
(``utils.course_tokenizers.course_tokenizer``) unless another one is passed.

Deliberately left out: re-ranking models, deduplication of evidence and LLM-written summaries
(``summarise`` is an extractive stand-in: the first sentence of each dropped turn).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .validation import ArgumentTypeError, check_choice, check_int, check_real

__all__ = ["Turn", "Evidence", "BudgetItem", "BudgetPlan", "plan_context", "first_sentences", "chunk_text",
           "overlap_score"]


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Evidence:
    text: str
    score: float  # relevance from a retriever, higher is better
    source: str = ""


@dataclass
class BudgetItem:
    kind: str  # "system", "history", "summary", "evidence", "question"
    label: str
    text: str  # what goes into the prompt ("" if dropped)
    tokens: int  # tokens it uses in the prompt (0 if dropped)
    original_tokens: int
    action: str  # "kept", "cut", "dropped", "summarised"
    reason: str


@dataclass
class BudgetPlan:
    window: int
    answer_reserve: int
    items: list[BudgetItem] = field(default_factory=list)
    assembled_tokens: int | None = None  # tokens of prompt() as one text; set by plan_context

    @property
    def parts_tokens(self) -> int:
        """The sum of the kept parts' token counts (each part encoded on its own)."""
        return sum(i.tokens for i in self.items)

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the assembled prompt: what the model reads (the parts' sum if not known)."""
        return self.parts_tokens if self.assembled_tokens is None else self.assembled_tokens

    @property
    def free_tokens(self) -> int:
        """Room left in the window after the prompt and the answer reserve (never negative)."""
        return self.window - self.prompt_tokens - self.answer_reserve

    def kept(self, kind: str | None = None) -> list[BudgetItem]:
        return [i for i in self.items if i.tokens > 0 and (kind is None or i.kind == kind)]

    def removed(self) -> list[BudgetItem]:
        return [i for i in self.items if i.action in ("dropped", "summarised")]

    def in_prompt_order(self) -> list[BudgetItem]:
        """Kept items as the prompt orders them: system, summary, history (oldest first), evidence
        (least relevant first, so the best sits next to the question), question."""
        order = {"system": 0, "summary": 1, "history": 2, "evidence": 3, "question": 4}
        kept = self.kept()
        evidence = [i for i in kept if i.kind == "evidence"][::-1]  # chosen best first; shown best last
        others = [i for i in kept if i.kind != "evidence"]
        return sorted(others + evidence, key=lambda i: order[i.kind])  # stable within each kind

    def prompt(self) -> str:
        """The assembled prompt (see ``in_prompt_order``)."""
        return "".join(i.text for i in self.in_prompt_order())

    def report(self) -> str:
        """What the prompt holds, in prompt order, then what was left out and why."""
        lines = [f"window {self.window} = prompt {self.prompt_tokens} + answer reserve {self.answer_reserve} "
                 f"+ free {self.free_tokens}"]
        if self.prompt_tokens != self.parts_tokens:  # BPE merged (or split) across the joins of the parts
            lines.append(f"(the parts below count {self.parts_tokens} tokens separately; joined, the prompt has "
                         f"{self.prompt_tokens})")
        lines.append("in the prompt, in order:")
        for i in self.in_prompt_order():
            used = f"{i.tokens}/{i.original_tokens}" if i.tokens != i.original_tokens else f"{i.tokens}"
            lines.append(f"  {i.action:<10} {i.kind:<8} {i.label:<20} {used:>5} tok  {i.reason}")
        removed = [i for i in self.items if i.tokens == 0]
        if removed:
            lines.append("left out:")
            for i in removed:
                lines.append(f"  {i.action:<10} {i.kind:<8} {i.label:<20} {i.original_tokens:>5} tok  {i.reason}")
        return "\n".join(lines)


def first_sentences(turns: Sequence[Turn], max_chars: int = 80) -> str:
    """Extractive stand-in for a summary: the first sentence of each turn, shortened."""
    parts = []
    for t in turns:
        sentence = re.split(r"(?<=[.!?。？！])\s*", t.text.strip(), maxsplit=1)[0]
        parts.append(f"{t.role}: {sentence[:max_chars]}")
    return "Summary of earlier conversation: " + " | ".join(parts) + "\n"


def chunk_text(text: str, max_tokens: int, tokenizer=None) -> list[str]:
    """Split a document into chunks of at most ``max_tokens`` tokens, losing no text.

    Paragraphs are split into sentences, which are packed greedily into chunks; a sentence that is
    longer than the limit is packed word by word (character by character for text without spaces,
    such as Chinese). Defined in chapter 3.
    """
    max_tokens = check_int(max_tokens, "max_tokens", minimum=1)  # True is not a count
    if not isinstance(text, str):
        raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
    tok = tokenizer or _default_tokenizer()
    count = lambda s: len(tok.encode(s, allowed_special="none"))  # noqa: E731

    def pack(units: list[str], sep: str, level: int) -> list[str]:
        out, current = [], ""
        for unit in units:
            candidate = current + sep + unit if current else unit
            if count(candidate) <= max_tokens:
                current = candidate
                continue
            if current:
                out.append(current)
                current = ""
            if count(unit) <= max_tokens:
                current = unit
            elif level == 0:  # a long sentence: its words
                out.extend(pack(unit.split(), " ", 1))
            else:  # a long word (or a sentence without spaces): its characters
                out.extend(pack(list(unit), "", 2))
        if current:
            out.append(current)
        return out

    chunks: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        sentences = [x for x in re.split(r"(?<=[.!?。？！])\s*", paragraph) if x]
        chunks.extend(pack(sentences, " ", 0))
    return chunks


_STOP = {"about", "after", "also", "been", "does", "from", "have", "into", "much", "that", "their", "there",
         "this", "what", "when", "where", "which", "while", "will", "with", "would", "your"}


def overlap_score(question: str, chunk: str) -> float:
    """A toy retriever: the share of the question's content words that the chunk contains.

    Content words have 4+ letters and are not in a short stop list; two words match when their
    first five letters do (so "reach" matches "reached"). Real systems compare embedding vectors
    (one learned vector per text) or use BM25; this is enough to rank chunks in a demonstration. Defined in chapter 3.

    Example: overlap_score("When did tea reach Europe?", "Tea reached Europe in 1610.") -> 1.0
    """
    def stems(s: str) -> set[str]:
        return {w[:5] for w in re.findall(r"[a-z]+", s.lower()) if len(w) >= 4 and w not in _STOP}

    q = stems(question)
    return len(q & stems(chunk)) / len(q) if q else 0.0


def _default_tokenizer():
    from .course_tokenizers import course_tokenizer

    return course_tokenizer()


def plan_context(
    window: int,
    system: str,
    question: str,
    answer_reserve: int,
    history: Sequence[Turn] = (),
    evidence: Sequence[Evidence] = (),
    *,
    min_score: float = 0.0,
    max_evidence_tokens: int | None = None,
    min_chunk_tokens: int = 20,
    history_strategy: str = "drop",
    summarise: Callable[[Sequence[Turn]], str] = first_sentences,
    tokenizer=None,
) -> BudgetPlan:
    """Fit a request into ``window`` tokens. Defined in chapter 3; see the module docstring.

    Evidence comes before history: in a retrieval-augmented (RAG) request the evidence is what
    answers the question. ``max_evidence_tokens`` caps evidence so that some history survives.
    """
    tok = tokenizer or _default_tokenizer()
    count = lambda s: len(tok.encode(s, allowed_special="none"))  # noqa: E731

    window = check_int(window, "window", minimum=1)
    answer_reserve = check_int(answer_reserve, "answer_reserve", minimum=0)
    min_chunk_tokens = check_int(min_chunk_tokens, "min_chunk_tokens", minimum=0)
    if max_evidence_tokens is not None:
        max_evidence_tokens = check_int(max_evidence_tokens, "max_evidence_tokens", minimum=0)
    # NaN would compare False with every score, so weak evidence would pass the threshold.
    min_score = check_real(min_score, "min_score", finite=False)
    check_choice(history_strategy, "history_strategy", ("drop", "summarise"))
    for name, value in (("system", system), ("question", question)):
        if not isinstance(value, str):
            raise ArgumentTypeError(f"{name} must be a str, got {type(value).__name__} {value!r:.40}")
    if not question.strip():
        raise ValueError("question must not be empty: the request has nothing to answer")
    for i, turn in enumerate(history):
        if not isinstance(turn, Turn) or not isinstance(turn.text, str) or not isinstance(turn.role, str):
            raise ValueError(f"history[{i}] must be a Turn(role, text) of two str, got {turn!r:.80}")
    for i, ev in enumerate(evidence):
        if not isinstance(ev, Evidence) or not isinstance(ev.text, str):
            raise ValueError(f"evidence[{i}] must be an Evidence(text, score, source), got {type(ev).__name__}")
        check_real(ev.score, f"evidence[{i}].score")

    system_text = f"System: {system}\n" if system else ""
    question_text = f"Question: {question}\n"
    n_system, n_question = count(system_text), count(question_text)
    prompt = _Prompt(system_text, question_text, count)
    n_fixed = prompt.tokens()  # system + question as one text: joined, they may count differently
    if n_fixed + answer_reserve > window:
        joined = "" if n_fixed == n_system + n_question else f" = {n_fixed} tokens when joined"
        raise ValueError(
            f"impossible budget: system prompt ({n_system}) + question ({n_question}){joined} + answer_reserve "
            f"({answer_reserve}) = {n_fixed + answer_reserve} tokens > window ({window}); shorten the system prompt, "
            "lower the reserve or use a model with a larger window (the question is never dropped)")
    limit = window - answer_reserve  # the assembled prompt may use at most this many tokens

    plan = BudgetPlan(window, answer_reserve)
    if system_text:
        plan.items.append(BudgetItem("system", "system prompt", system_text, n_system, n_system, "kept", "always kept"))

    # Evidence: best first, weak chunks out, cut the last one to fit if enough room is left.
    evidence_used = 0  # the parts' own counts, for max_evidence_tokens
    ranked = sorted(enumerate(evidence), key=lambda ie: (-ie[1].score, ie[0]))  # best first: it is chosen first
    for rank, (idx, ev) in enumerate(ranked):
        label = ev.source or f"chunk {idx}"
        text = f"Evidence ({label}): {ev.text}\n"
        n = count(text)
        room = limit - prompt.tokens()
        evidence_room = room if max_evidence_tokens is None else min(room, max_evidence_tokens - evidence_used)
        fits = lambda t, m, room=evidence_room: m <= room and prompt.tokens(evidence=t) <= limit
        if ev.score < min_score:
            plan.items.append(BudgetItem("evidence", label, "", 0, n, "dropped",
                                         f"relevance {ev.score:.2f} < min_score {min_score:.2f}"))
        elif fits(text, n):
            plan.items.append(BudgetItem("evidence", label, text, n, n, "kept",
                                         f"rank {rank + 1}, relevance {ev.score:.2f}"))
            prompt.evidence.append(text)
            evidence_used += n
        elif evidence_room >= max(min_chunk_tokens, 1) and (cut := _cut_to_tokens(
                lambda t, fits=fits: fits(t, count(t)), _prefix_decoder(tok, text))):
            m = count(cut)
            plan.items.append(BudgetItem("evidence", label, cut, m, n, "cut",
                                         f"rank {rank + 1}: cut to the {_tokens(evidence_room)} left"))
            prompt.evidence.append(cut)
            evidence_used += m
        else:
            plan.items.append(BudgetItem("evidence", label, "", 0, n, "dropped",
                                         f"rank {rank + 1}: needs {_tokens(n)}, "
                                         f"{max(evidence_room, 0)} left"))

    # History: newest first; what does not fit is dropped, or summarised.
    kept_history: list[tuple[int, BudgetItem]] = []  # (turn index, item); the summary sorts first as -1
    overflow: list[tuple[int, Turn, int]] = []  # turns that did not fit, newest first
    for idx in range(len(history) - 1, -1, -1):
        turn = history[idx]
        text = f"{turn.role.capitalize()}: {turn.text}\n"
        n = count(text)
        if not overflow and prompt.tokens(older_turn=text) <= limit:
            kept_history.append((idx, BudgetItem("history", f"turn {idx} ({turn.role})", text, n, n, "kept",
                                                 "one of the newest turns that fit")))
            prompt.history.insert(0, text)  # older turns go before newer ones
        else:
            overflow.append((idx, turn, n))  # once one turn is left out, all older ones are too
    summarised: set[int] = set()
    if overflow and history_strategy == "summarise":
        # Summarise as many of the left-out turns as the room allows, the most recent ones first;
        # turns that fit verbatim are never traded for a summary.
        for keep in range(len(overflow), 0, -1):
            chosen = sorted(overflow[:keep])  # the `keep` most recent left-out turns, oldest first
            summary = summarise([t for _, t, _ in chosen])
            if not isinstance(summary, str):
                raise ArgumentTypeError(f"summarise must return a str, got {type(summary).__name__}")
            if prompt.tokens(summary=summary) <= limit:
                n = count(summary)
                label = f"summary of {keep} turn" + ("s" if keep > 1 else "")
                kept_history.append((-1, BudgetItem("summary", label, summary, n, n, "kept",
                                                    "replaces turns that did not fit")))
                prompt.summary = summary
                summarised = {idx for idx, _, _ in chosen}
                break
    for idx, turn, n in sorted(overflow):
        if idx in summarised:
            action, why = "summarised", "did not fit; in the summary"
        elif history_strategy == "summarise":
            action, why = "dropped", "not even in the summary"
        else:
            action, why = "dropped", "older than the turns that fit"
        plan.items.append(BudgetItem("history", f"turn {idx} ({turn.role})", "", 0, n, action, why))
    plan.items.extend(item for _, item in sorted(kept_history, key=lambda pair: pair[0]))
    plan.items.append(BudgetItem("question", "question", question_text, n_question, n_question, "kept",
                                 "always kept"))
    plan.assembled_tokens = count(plan.prompt())
    # The invariant the whole module exists for, on the text the model will actually read.
    if plan.assembled_tokens + answer_reserve > window or plan.prompt() != prompt.text():
        raise AssertionError(f"plan_context broke its guarantee: {plan.assembled_tokens} + {answer_reserve} > {window}")
    return plan


class _Prompt:
    """The prompt as it is being planned, in prompt order, so that every decision counts the joined text."""

    def __init__(self, system: str, question: str, count):
        self.system, self.question, self.count = system, question, count
        self.summary = ""
        self.history: list[str] = []  # oldest first
        self.evidence: list[str] = []  # in the order chosen: best first (shown best last)

    def text(self, evidence: str = "", older_turn: str = "", summary: str | None = None) -> str:
        """The assembled prompt, optionally with one more evidence chunk (the least relevant so far, so
        it goes first), one more (older) history turn, or a summary."""
        shown_evidence = ([evidence] if evidence else []) + self.evidence[::-1]
        return "".join([self.system, self.summary if summary is None else summary, older_turn, *self.history,
                        *shown_evidence, self.question])

    def tokens(self, **extra) -> int:
        return self.count(self.text(**extra))


def _tokens(n: int) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


def _prefix_decoder(tok, text: str):
    """k -> the text of the first k tokens of ``text``, without a trailing partial UTF-8 character.

    A token boundary can fall inside a character (Chinese characters are 3 bytes, often split over
    two tokens); decoding such a prefix would end in U+FFFD, so the incomplete bytes are left out.
    """
    ids = tok.encode(text, allowed_special="none")

    def decode_prefix(k: int) -> str:
        return tok.decode_bytes(ids[:k]).decode("utf-8", errors="ignore")

    decode_prefix.n_ids = len(ids)
    return decode_prefix


def _cut_to_tokens(fits, decode_prefix) -> str:
    """The longest prefix (at a token boundary) that, with '...' and a newline, ``fits``; "" if none does."""
    lo, hi, best = 1, decode_prefix.n_ids, ""  # at least one token of the chunk, or nothing
    while lo <= hi:  # binary search on the number of kept tokens
        mid = (lo + hi) // 2
        candidate = decode_prefix(mid).rstrip("\n") + "...\n"
        if fits(candidate):
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best
