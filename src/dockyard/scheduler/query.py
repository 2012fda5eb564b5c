"""The ECS cluster query language: parse an expression once, evaluate it many times.

Used by ``memberOf`` placement constraints and ``ListContainerInstances(filter=...)``.

Grammar (case-insensitive keywords)::

    expr    := or
    or      := and (("||" | "or") and)*
    and     := unary (("&&" | "and") unary)*
    unary   := ("!" | "not") unary | "(" expr ")" | simple
    simple  := SUBJECT OPERATOR [ARGUMENT]

Subjects: ``agentConnected``, ``agentVersion``, ``attribute:<name>``,
``ec2InstanceId``, ``registeredAt``, ``runningTasksCount``, ``task:group``.
Operators: ``==`` ``!=`` ``>`` ``>=`` ``<`` ``<=`` ``exists`` ``!exists`` ``in``
``!in`` ``=~`` ``!~`` and their word forms (``equals``, ``not_equals``,
``greater_than``, ``greater_than_equal``, ``less_than``, ``less_than_equal``,
``not_exists``, ``not_in``, ``matches``, ``not_matches``). ``in`` takes a list
``[a, b, 'c']``; values may be quoted with ``'`` or ``"`` (needed for values
holding spaces, parentheses or commas).

``compile_query(text)`` returns a ``Query``: call it with an ``InstanceFacts``
to get True/False. Syntax errors raise ``QuerySyntaxError`` (a ValueError)
whose message says what was wrong and where.

Evaluation rules:

* A missing subject (an attribute the instance does not have, no EC2 id)
  satisfies only the negative operators: ``!=``, ``!in``, ``!~``, ``!exists``.
* ``task:group`` is the set of groups of the tasks on the instance: ``==`` and
  ``in``/``=~`` hold when any group matches; the negative operators when none does.
* ``agentVersion`` compares dotted versions numerically; ``runningTasksCount``
  compares integers; ``registeredAt`` compares instants (``2018-06-18``,
  ``2018-06-18T22:28:28Z`` or ``…+00:00``; a date alone is midnight UTC);
  ``attribute:<name>`` compares numerically when both sides are numbers,
  otherwise as text; ``agentConnected`` compares with ``true``/``false``.
* ``=~`` is a whole-value regular-expression match (as Java's ``matches``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_LENGTH = 2000


class QuerySyntaxError(ValueError):
    pass


@dataclass(slots=True)
class InstanceFacts:
    """What the query language can ask about a container instance."""

    agent_connected: bool = False
    agent_version: str | None = None
    attributes: dict[str, str | None] = field(default_factory=dict)
    ec2_instance_id: str | None = None
    registered_at: float = 0.0  # epoch seconds
    running_tasks_count: int = 0
    task_groups: frozenset[str] | set[str] = frozenset()


Predicate = Callable[[InstanceFacts], bool]

# -- operators ---------------------------------------------------------------

_SYMBOL_OPS = ("!exists", "!in", "==", "!=", ">=", "<=", "=~", "!~", ">", "<")
_WORD_OPS = {
    "equals": "==", "not_equals": "!=", "greater_than_equal": ">=", "greater_than": ">",
    "less_than_equal": "<=", "less_than": "<", "exists": "exists", "not_exists": "!exists",
    "in": "in", "not_in": "!in", "matches": "=~", "not_matches": "!~",
}
_NEGATIVE = {"!=", "!in", "!~", "!exists"}
_ORDERING = {">", ">=", "<", "<="}

_SUBJECT_RE = re.compile(
    r"(agentConnected|agentVersion|ec2InstanceId|registeredAt|runningTasksCount|task:group"
    r"|attribute:[A-Za-z0-9_./\\-]+)(?![A-Za-z0-9_:.\\/-])", re.IGNORECASE)
_CANONICAL_SUBJECTS = {s.lower(): s for s in ("agentConnected", "agentVersion", "ec2InstanceId",
                                              "registeredAt", "runningTasksCount", "task:group")}
_WORD_RE = re.compile(r"[A-Za-z_]+")
# A bare (unquoted) value runs to whitespace, a parenthesis, '&&' or '||' (in lists: ',' or ']').
_BARE_RE = re.compile(r"(?:(?!&&|\|\|)[^\s()])+")
_BARE_LIST_RE = re.compile(r"[^\s,\[\]]+")


def _parse_version(text: str) -> tuple[int, ...] | None:
    m = re.match(r"^v?(\d+(?:\.\d+)*)", text.strip())
    if not m:
        return None
    return tuple(int(p) for p in m.group(1).split("."))


def _parse_instant(text: str) -> float | None:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _to_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)  # "<="


# -- the parser --------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.uses_task_group = False
        self.subjects: set[str] = set()

    # low level
    def error(self, what: str) -> QuerySyntaxError:
        return QuerySyntaxError(f"Invalid expression: {what} at position {self.i + 1}.")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self, tok: str) -> bool:
        return self.s.startswith(tok, self.i)

    def word_at(self) -> str | None:
        m = _WORD_RE.match(self.s, self.i)
        return m.group(0) if m else None

    def at_end(self) -> bool:
        self.ws()
        return self.i >= len(self.s)

    # grammar
    def parse(self) -> Predicate:
        if not self.s.strip():
            raise QuerySyntaxError("Invalid expression: the expression is empty.")
        pred = self.or_expr()
        if not self.at_end():
            raise self.error(f"unexpected '{self.s[self.i:self.i + 20]}'")
        return pred

    def _keyword(self, symbol: str, word: str) -> bool:
        """Consume ``symbol`` or the keyword ``word`` (followed by a boundary)."""
        self.ws()
        if self.peek(symbol):
            self.i += len(symbol)
            return True
        w = self.word_at()
        if w is not None and w.lower() == word:
            self.i += len(w)
            return True
        return False

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self._keyword("||", "or"):
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda f: any(p(f) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self._keyword("&&", "and"):
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda f: all(p(f) for p in parts)

    def unary(self) -> Predicate:
        self.ws()
        if self.i >= len(self.s):
            raise self.error("expression ends too early")
        if self.peek("!") and not self.peek("!=") and not self.peek("!~"):
            self.i += 1
            inner = self.unary()
            return lambda f: not inner(f)
        w = self.word_at()
        if w is not None and w.lower() == "not":
            after = self.s[self.i + len(w):self.i + len(w) + 1]
            if after == "" or after.isspace() or after == "(":
                self.i += len(w)
                inner = self.unary()
                return lambda f: not inner(f)
        if self.peek("("):
            self.i += 1
            inner = self.or_expr()
            self.ws()
            if not self.peek(")"):
                raise self.error("missing ')'")
            self.i += 1
            return inner
        return self.simple()

    def subject(self) -> str:
        self.ws()
        m = _SUBJECT_RE.match(self.s, self.i)
        if m is None:
            raise self.error(f"unknown subject '{self.s[self.i:].split(' ', 1)[0]}'")
        self.i = m.end()
        raw = m.group(1)
        if raw.lower().startswith("attribute:"):
            return "attribute:" + raw[len("attribute:"):]
        return _CANONICAL_SUBJECTS[raw.lower()]

    def operator(self) -> str:
        self.ws()
        for sym in _SYMBOL_OPS:
            if self.peek(sym):
                # "!in"/"!exists" must end at a word boundary ("!inx" is not an operator).
                end = self.i + len(sym)
                if sym[-1].isalpha() and end < len(self.s) and (self.s[end].isalnum() or self.s[end] == "_"):
                    continue
                self.i = end
                return sym
        w = self.word_at()
        if w is not None and w.lower() in _WORD_OPS:
            self.i += len(w)
            return _WORD_OPS[w.lower()]
        raise self.error("expected an operator")

    def value(self, in_list: bool = False) -> str:
        self.ws()
        if self.i >= len(self.s):
            raise self.error("expected a value")
        q = self.s[self.i]
        if q in ("'", '"'):
            end = self.s.find(q, self.i + 1)
            if end < 0:
                raise self.error("unterminated quoted value")
            v = self.s[self.i + 1:end]
            self.i = end + 1
            return v
        m = (_BARE_LIST_RE if in_list else _BARE_RE).match(self.s, self.i)
        if m is None:
            raise self.error("expected a value")
        self.i = m.end()
        return m.group(0)

    def value_list(self) -> list[str]:
        self.ws()
        if not self.peek("["):
            raise self.error("expected a list such as [a, b]")
        self.i += 1
        items: list[str] = []
        self.ws()
        if self.peek("]"):
            self.i += 1
            return items
        while True:
            items.append(self.value(in_list=True))
            self.ws()
            if self.peek(","):
                self.i += 1
                continue
            if self.peek("]"):
                self.i += 1
                return items
            raise self.error("expected ',' or ']' in list")

    def simple(self) -> Predicate:
        subj = self.subject()
        op = self.operator()
        self.subjects.add(subj if not subj.startswith("attribute:") else "attribute")
        if subj == "task:group":
            self.uses_task_group = True
        if op in ("exists", "!exists"):
            return _build(subj, op, None, self)
        if op in ("in", "!in"):
            return _build(subj, op, self.value_list(), self)
        return _build(subj, op, self.value(), self)


def _regex(p: _Parser, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise p.error(f"invalid regular expression '{pattern}' ({e})") from None


def _build(subj: str, op: str, arg: Any, p: _Parser) -> Predicate:
    negative = op in _NEGATIVE

    # -- task:group: a set of values --------------------------------------
    if subj == "task:group":
        if op in _ORDERING:
            raise p.error(f"operator '{op}' cannot be used with task:group")
        if op in ("exists", "!exists"):
            return lambda f: bool(f.task_groups) != negative
        if op in ("in", "!in"):
            wanted = frozenset(arg)
            return lambda f: bool(wanted.intersection(f.task_groups)) != negative
        if op in ("=~", "!~"):
            rx = _regex(p, arg)
            return lambda f: any(rx.fullmatch(g) for g in f.task_groups) != negative
        value = arg
        return lambda f: (value in f.task_groups) != negative

    # -- single-valued subjects: a getter and a way to read the argument ---
    getter: Callable[[InstanceFacts], Any]
    convert: Callable[[str], Any]
    if subj == "agentConnected":
        getter = lambda f: f.agent_connected

        def convert(v: str) -> Any:
            if v.lower() not in ("true", "false"):
                raise p.error(f"agentConnected takes true or false, not '{v}'")
            return v.lower() == "true"
        if op in _ORDERING or op in ("=~", "!~"):
            raise p.error(f"operator '{op}' cannot be used with agentConnected")
    elif subj == "agentVersion":
        getter = lambda f: _parse_version(f.agent_version) if f.agent_version else None

        def convert(v: str) -> Any:
            parsed = _parse_version(v)
            if parsed is None:
                raise p.error(f"'{v}' is not a version")
            return parsed
    elif subj == "runningTasksCount":
        getter = lambda f: f.running_tasks_count

        def convert(v: str) -> Any:
            if not re.fullmatch(r"-?\d+", v):
                raise p.error(f"runningTasksCount takes a whole number, not '{v}'")
            return int(v)
    elif subj == "registeredAt":
        getter = lambda f: f.registered_at

        def convert(v: str) -> Any:
            t = _parse_instant(v)
            if t is None:
                raise p.error(f"'{v}' is not a date")
            return t
    elif subj == "ec2InstanceId":
        getter = lambda f: f.ec2_instance_id
        convert = str
    else:  # attribute:<name>
        name = subj[len("attribute:"):]

        def getter(f: InstanceFacts) -> Any:
            if name not in f.attributes:
                return None
            v = f.attributes[name]
            return "" if v is None else v
        convert = str

    # agentVersion and runningTasksCount: matching and regexes read the text form.
    textual = subj in ("ec2InstanceId",) or subj.startswith("attribute:")

    if op in ("exists", "!exists"):
        return lambda f: (getter(f) is not None) != negative

    if op in ("=~", "!~"):
        rx = _regex(p, arg)

        def text_of(f: InstanceFacts) -> str | None:
            if subj == "agentVersion":
                return f.agent_version
            if subj == "runningTasksCount":
                return str(f.running_tasks_count)
            if subj == "registeredAt":
                return datetime.fromtimestamp(f.registered_at, UTC).isoformat()
            v = getter(f)
            return None if v is None else str(v)

        def match(f: InstanceFacts) -> bool:
            v = text_of(f)
            if v is None:
                return negative
            return bool(rx.fullmatch(v)) != negative
        return match

    if op in ("in", "!in"):
        values = [convert(v) for v in arg]

        def member(f: InstanceFacts) -> bool:
            v = getter(f)
            if v is None:
                return negative
            hit = any(_equal(subj, v, w) for w in values)
            return hit != negative
        return member

    want: Any = convert(arg)
    if textual:
        num_want = _to_number(want)

        def cmp_text(f: InstanceFacts) -> bool:
            v: Any = getter(f)
            if v is None:
                return negative
            if op in _ORDERING:
                num_v = _to_number(v)
                if num_v is not None and num_want is not None:
                    return _compare(op, num_v, num_want)
                return _compare(op, v, want)
            return _compare(op, v, want)
        return cmp_text

    def cmp(f: InstanceFacts) -> bool:
        v: Any = getter(f)
        if v is None:
            return negative
        if subj == "agentVersion":
            # Versions of different lengths compare as if padded with zeros (1.14 == 1.14.0).
            n = max(len(v), len(want))
            return _compare(op, v + (0,) * (n - len(v)), want + (0,) * (n - len(want)))
        return _compare(op, v, want)
    return cmp


def _equal(subj: str, have: Any, want: Any) -> bool:
    if subj == "agentVersion":
        n = max(len(have), len(want))
        return bool(have + (0,) * (n - len(have)) == want + (0,) * (n - len(want)))
    return bool(have == want)


class Query:
    """A compiled expression; call it with an InstanceFacts."""

    __slots__ = ("_pred", "subjects", "text", "uses_task_group")

    def __init__(self, text: str, pred: Predicate, uses_task_group: bool, subjects: frozenset[str]) -> None:
        self.text = text
        self._pred = pred
        self.uses_task_group = uses_task_group
        self.subjects = subjects

    def __call__(self, facts: InstanceFacts) -> bool:
        return self._pred(facts)

    matches = __call__

    def __repr__(self) -> str:
        return f"Query({self.text!r})"


@functools.lru_cache(maxsize=4096)
def compile_query(text: str) -> Query:
    """Parse ``text`` once; raises QuerySyntaxError for anything the language does not allow."""
    if len(text) > MAX_LENGTH:
        raise QuerySyntaxError(f"Invalid expression: longer than {MAX_LENGTH} characters.")
    p = _Parser(text)
    pred = p.parse()
    return Query(text, pred, p.uses_task_group, frozenset(p.subjects))
