"""An incremental JSON parser: feed text in fragments, read the partial value at any time.

Tool-call arguments and structured output arrive as JSON in small fragments. Re-parsing the
whole text after every fragment (what most SDKs do) costs O(n²) over a stream; this parser
reads each character once, so a stream costs O(n) in total however it was split, and
:meth:`PartialJSONParser.snapshot` costs O(nesting depth).

Partial semantics (what :attr:`PartialJSONParser.value` shows before the text is complete):

- Nothing has started: ``None``.
- Objects and arrays appear as soon as they open (``{"a": [`` reads ``{"a": []}``).
- A string value appears as soon as its opening quote arrives and grows with each fragment
  (``{"a": "Hel`` reads ``{"a": "Hel"}``); an escape sequence cut by a fragment boundary
  (``\\u00``, or a surrogate pair's first half) is withheld until it is complete.
- An object key appears only once its value has started: ``{"a"`` and ``{"a":`` read ``{}``.
- A number is withheld until a character after it proves it complete (``{"n": 12`` reads
  ``{}``; ``12`` could still become ``123`` or ``12.5``), and so is an unfinished literal
  (``tru``). Nothing is guessed: every value shown is a prefix of the final value, and
  scalars other than strings are shown only with their final value.
- At the end of the text, :meth:`PartialJSONParser.finish` releases a trailing top-level
  number and returns the complete value (equal to ``orjson.loads`` of the whole text).

Invalid JSON stops the parser: :attr:`PartialJSONParser.error` is set, the partial value
stays at the last valid state, and :meth:`~PartialJSONParser.finish` raises it.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Any, Final

from rxllm.errors import PartialJSONError

__all__ = ["PartialJSONError", "PartialJSONParser", "PartialMark", "parse_partial"]

_WS: Final = re.compile(r"[ \t\n\r]*")
_STR: Final = re.compile(r'[^"\\\x00-\x1f]*')
_NUM: Final = re.compile(r"[-+0-9.eE]*")
_NUM_FULL: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_LIT: Final = re.compile(r"[a-z]*")
# fast paths: a whole key with its colon, a whole escape-free string, within one buffer
_KEY_FAST: Final = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:')
_STR_FAST: Final = re.compile(r'"([^"\\\x00-\x1f]*)"')
_HEX4: Final = re.compile(r"[0-9a-fA-F]{4}")
_HEX_PREFIX: Final = re.compile(r"[0-9a-fA-F]{0,4}")
_LITERALS: Final = {"true": True, "false": False, "null": None}
_ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# parser states
_VALUE: Final = 0  # a value must come
_FIRST_ITEM: Final = 1  # after "[": a value or "]"
_FIRST_KEY: Final = 2  # after "{": a key or "}"
_KEY: Final = 3  # after "," in an object: a key
_IN_KEY: Final = 4
_COLON: Final = 5
_IN_STR: Final = 6
_AFTER: Final = 7  # after a value: "," or a closer (or, at the top, only whitespace)
_FAILED: Final = 8

_MISSING: Any = object()
_INT64: Final = 1 << 63


class _Joined:
    """A growing list of string parts, joined on demand; reading in order costs only the new parts."""

    __slots__ = ("_n", "_text", "parts")

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self._text = ""
        self._n = 0

    def upto(self, n: int) -> str:
        """The first ``n`` parts joined (cached: the next read joins only what was added)."""
        if n < self._n:
            return "".join(self.parts[:n])
        if n > self._n:
            self._text += "".join(self.parts[self._n : n])
            self._n = n
        return self._text


class PartialMark:
    """The parser's state at one moment, cheap to take; :meth:`value` materializes it.

    The parser's containers only grow, so a mark keeps each open container with its length
    and the open string's parts with their count; the value is joined only when read.
    """

    __slots__ = ("_frames", "_leaf", "_value")

    def __init__(self, frames: tuple[tuple[Any, int, Any], ...], leaf: tuple[_Joined, int] | None) -> None:
        self._frames = frames
        self._leaf = leaf
        self._value: Any = _MISSING

    def value(self) -> Any:
        """The partial value as it stood (built on first call, then cached; treat as read-only)."""
        v = self._value
        if v is _MISSING:
            v = self._value = _materialize(self._frames, self._leaf)
        return v


def _materialize(frames: tuple[tuple[Any, int, Any], ...], leaf: tuple[_Joined, int] | None) -> Any:
    child: Any = _MISSING
    if leaf is not None:
        joined, n = leaf
        child = joined.upto(n)
    for container, length, key in reversed(frames):
        copy: Any
        if container.__class__ is list:
            copy = container[:length]
            if child is not _MISSING:
                copy[-1] = child
        else:
            copy = dict(islice(container.items(), length)) if length < len(container) else dict(container)
            if child is not _MISSING:
                copy[key] = child
        child = copy
    return child[0] if child else None


class PartialJSONParser:
    """Parses one JSON text fed in fragments, in time linear in its length.

    ::

        p = PartialJSONParser()
        p.feed('{"city": "Par')
        p.value            # {'city': 'Par'}
        p.feed('is", "n": 1')
        p.value            # {'city': 'Paris'}   (1 may still grow: withheld)
        p.feed("2}")
        p.finish()         # {'city': 'Paris', 'n': 12}

    See the module docstring for what a partial value shows.
    """

    __slots__ = ("_carry", "_joined", "_keys", "_parts", "_prefix", "_stack", "_state", "changes", "error", "length")

    def __init__(self) -> None:
        root: list[Any] = []
        self._stack: list[Any] = [root]
        self._keys: list[Any] = [None]
        self._state = _VALUE
        self._carry = ""
        self._parts: list[str] = []
        self._joined = _Joined(self._parts)
        self._prefix: tuple[tuple[Any, int, Any], ...] | None = None
        #: Increases whenever the partial value changes (cheap change detection).
        self.changes = 0
        #: The syntax error that stopped the parser, if any.
        self.error: PartialJSONError | None = None
        #: How many characters were fed.
        self.length = 0

    @property
    def done(self) -> bool:
        """Whether a complete top-level value has been read (only whitespace may follow)."""
        return self._state == _AFTER and len(self._stack) == 1

    @property
    def value(self) -> Any:
        """The partial value now (O(size of the open containers); see the module docstring)."""
        return self.snapshot().value()

    def snapshot(self) -> PartialMark:
        """A mark of the state now, costing O(nesting depth); its value is built when read."""
        stack = self._stack
        prefix = self._prefix
        if prefix is None:
            # frames above the innermost do not change while it is open
            prefix = self._prefix = tuple(zip(stack[:-1], map(len, stack[:-1]), self._keys[:-1]))  # noqa: B905
        top = stack[-1]
        frames = (*prefix, (top, len(top), self._keys[-1]))
        leaf = (self._joined, len(self._parts)) if self._state == _IN_STR else None
        return PartialMark(frames, leaf)

    def _fail(self, reason: str, position: int) -> None:
        self._state = _FAILED
        self.error = PartialJSONError(reason, position)

    def feed(self, fragment: str) -> None:
        """Read the next fragment (any split is fine: mid-token, mid-escape, mid-character)."""
        if self._state == _FAILED or not fragment:
            return
        base = self.length - len(self._carry)
        self.length += len(fragment)
        text = self._carry + fragment if self._carry else fragment
        self._carry = ""
        n = len(text)
        i = 0
        state = self._state
        stack = self._stack
        keys = self._keys
        parts = self._parts
        changes = self.changes
        while i < n:
            if state in (_IN_STR, _IN_KEY):
                j = _STR.match(text, i).end()  # type: ignore[union-attr]
                if j > i:
                    parts.append(text[i:j])
                    if state == _IN_STR:
                        changes += 1
                if j == n:
                    break
                ch = text[j]
                if ch == '"':
                    s = "".join(parts)
                    if state == _IN_STR:
                        top = stack[-1]
                        if top.__class__ is list:
                            top[-1] = s
                        else:
                            top[keys[-1]] = s
                        state = _AFTER
                    else:
                        keys[-1] = s
                        state = _COLON
                    parts = self._parts = []
                    i = j + 1
                elif ch == "\\":
                    plain = _ESCAPES.get(text[j + 1 : j + 2])
                    if plain is not None:  # the common escapes, inline
                        parts.append(plain)
                        if state == _IN_STR:
                            changes += 1
                        i = j + 2
                        continue
                    decoded = self._escape(text, j, n, base)
                    if decoded is None:
                        if self.error is not None:
                            state = _FAILED
                            break
                        self._carry = text[j:]
                        break
                    parts.append(decoded[0])
                    if state == _IN_STR:
                        changes += 1
                    i = decoded[1]
                else:
                    self._fail("unescaped control character in string", base + j)
                    state = _FAILED
                    break
                continue
            c = text[i]
            if c in " \t\n\r":
                i = _WS.match(text, i).end()  # type: ignore[union-attr]
                continue
            if state == _AFTER:
                depth = len(stack)
                if depth == 1:
                    self._fail("unexpected data after the top-level value", base + i)
                    state = _FAILED
                    break
                top = stack[-1]
                if c == ",":
                    state = _VALUE if top.__class__ is list else _KEY
                elif (c == "}" and top.__class__ is dict) or (c == "]" and top.__class__ is list):
                    stack.pop()
                    self._prefix = None
                    keys.pop()
                else:
                    self._fail(f"expected ',' or a closing bracket, got {c!r}", base + i)
                    state = _FAILED
                    break
                i += 1
            elif state == _COLON:
                if c != ":":
                    self._fail(f"expected ':' after an object key, got {c!r}", base + i)
                    state = _FAILED
                    break
                state = _VALUE
                i += 1
            elif state in (_FIRST_KEY, _KEY):
                if c == '"':
                    m = _KEY_FAST.match(text, i)
                    if m is not None:
                        keys[-1] = m.group(1)
                        state = _VALUE
                        i = m.end()
                        continue
                    state = _IN_KEY
                elif c == "}" and state == _FIRST_KEY:
                    stack.pop()
                    self._prefix = None
                    keys.pop()
                    state = _AFTER
                else:
                    self._fail(f"expected an object key, got {c!r}", base + i)
                    state = _FAILED
                    break
                i += 1
            else:  # _VALUE or _FIRST_ITEM
                value: Any
                if c == '"':
                    m = _STR_FAST.match(text, i)
                    if m is not None:
                        value = m.group(1)
                        state = _AFTER
                        i = m.end()
                    else:
                        value = ""
                        state = _IN_STR
                        self._joined = _Joined(parts)
                        i += 1
                elif c == "{":
                    value = {}
                    state = _FIRST_KEY
                    i += 1
                elif c == "[":
                    value = []
                    state = _FIRST_ITEM
                    i += 1
                elif c == "]" and state == _FIRST_ITEM:
                    stack.pop()
                    self._prefix = None
                    keys.pop()
                    state = _AFTER
                    i += 1
                    continue
                elif c in "-0123456789":
                    m = _NUM_FULL.match(text, i)
                    j = m.end() if m is not None else i
                    if m is None or j == n or text[j] in "-+.eE0123456789":
                        j = _NUM.match(text, i).end()  # type: ignore[union-attr]
                        if j == n:
                            self._carry = text[i:]
                            break
                        m = None
                    if m is not None and m.group(1) is None and m.group(2) is None and j - i < 19:
                        value = int(m.group())
                    else:
                        value = self._number(text[i:j], base + i)
                    if value is _MISSING:
                        state = _FAILED
                        break
                    state = _AFTER
                    i = j
                elif c in "tfn":
                    j = _LIT.match(text, i).end()  # type: ignore[union-attr]
                    word = text[i:j]
                    if word not in _LITERALS:
                        if j == n and any(lit.startswith(word) for lit in _LITERALS):
                            self._carry = word
                            break
                        self._fail(f"invalid literal {word!r}", base + i)
                        state = _FAILED
                        break
                    value = _LITERALS[word]
                    state = _AFTER
                    i = j
                else:
                    self._fail(f"expected a JSON value, got {c!r}", base + i)
                    state = _FAILED
                    break
                top = stack[-1]
                if top.__class__ is list:
                    if len(stack) == 1 and top:
                        self._fail("unexpected data after the top-level value", base + i - 1)
                        state = _FAILED
                        break
                    top.append(value)
                else:
                    top[keys[-1]] = value
                changes += 1
                if state in (_FIRST_KEY, _FIRST_ITEM):
                    stack.append(value)
                    self._prefix = None
                    keys.append(None)
        self._state = state
        self.changes = changes

    def _number(self, token: str, position: int) -> Any:
        m = _NUM_FULL.fullmatch(token)
        if m is None:
            self._fail(f"invalid number {token!r}", position)
            return _MISSING
        if m.group(1) is None and m.group(2) is None:
            value = int(token)
            if len(token) > 18 and not -_INT64 <= value < 2 * _INT64:
                return float(value)  # as orjson reads integers beyond 64 bits
            return value
        number = float(token)
        if number in (float("inf"), float("-inf")):
            self._fail(f"number {token!r} is too large", position)
            return _MISSING
        return number

    def _escape(self, text: str, j: int, n: int, base: int) -> tuple[str, int] | None:
        """Decode the escape at ``text[j]`` (a backslash): (text, next index), or None.

        None means incomplete (carry it over) unless :attr:`error` was set.
        """
        if j + 1 >= n:
            return None
        e = text[j + 1]
        if e != "u":
            plain = _ESCAPES.get(e)
            if plain is None:
                self._fail(f"invalid escape \\{e}", base + j)
                return None
            return plain, j + 2
        hex1 = text[j + 2 : j + 6]
        if len(hex1) < 4:
            if _HEX_PREFIX.fullmatch(hex1) is None:
                self._fail("invalid \\u escape", base + j)
            return None
        if _HEX4.fullmatch(hex1) is None:
            self._fail("invalid \\u escape", base + j)
            return None
        cp = int(hex1, 16)
        if 0xDC00 <= cp < 0xE000:
            self._fail("lone low surrogate in string", base + j)
            return None
        if cp < 0xD800 or cp >= 0xDC00:
            return chr(cp), j + 6
        low = text[j + 6 : j + 12]
        if len(low) < 6:
            if not "\\u".startswith(low[:2]) or _HEX_PREFIX.fullmatch(low[2:]) is None:
                self._fail("no low surrogate after a high surrogate", base + j)
            return None
        if low[:2] != "\\u" or _HEX4.fullmatch(low[2:]) is None:
            self._fail("no low surrogate after a high surrogate", base + j)
            return None
        cp2 = int(low[2:], 16)
        if not 0xDC00 <= cp2 < 0xE000:
            self._fail("no low surrogate after a high surrogate", base + j)
            return None
        return chr(0x10000 + ((cp - 0xD800) << 10) + (cp2 - 0xDC00)), j + 12

    def finish(self) -> Any:
        """The complete value, once all text was fed (releases a trailing top-level number).

        Raises:
            PartialJSONError: When the text is not one complete JSON value.
        """
        if self.error is not None:
            raise self.error
        carry = self._carry
        if carry and self._state in (_VALUE, _FIRST_ITEM) and len(self._stack) == 1:
            self._carry = ""
            if carry in _LITERALS:
                value = _LITERALS[carry]
            else:
                value = self._number(carry, self.length - len(carry))
                if value is _MISSING:
                    raise self.error  # type: ignore[misc]
            self._stack[0].append(value)
            self._state = _AFTER
            self.changes += 1
        if not self.done:
            self._fail("unexpected end of JSON text", self.length)
            raise self.error  # type: ignore[misc]
        return self._stack[0][0]


def parse_partial(text: str) -> Any:
    """The partial value of an unfinished JSON text (see the module docstring).

    Args:
        text: A JSON text, possibly cut anywhere.

    Returns:
        What :attr:`PartialJSONParser.value` shows after feeding ``text``.
    """
    parser = PartialJSONParser()
    parser.feed(text)
    return parser.value
