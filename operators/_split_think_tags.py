"""``split_think_tags``: ``<think>…</think>`` moved out of ``content`` into ``reasoning_content``."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from reactivex import Observable, abc

from rxllm.types import ChatCompletionChunk, StreamChoice

__all__ = ["split_think_tags"]

_Operator = Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]


def _held_suffix(text: str, tag: str) -> int:
    """The length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class _Splitter:
    """One choice's state: inside reasoning or not, and text held back because it may be a tag."""

    __slots__ = ("close_tag", "fresh", "held", "open_tag", "scanned", "thinking", "undecided")

    def __init__(self, open_tag: str, close_tag: str, implicit_open: bool | None) -> None:
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.thinking = implicit_open is True
        self.fresh = implicit_open is not False  # an opening tag may still come first, and is then dropped
        self.undecided = implicit_open is None  # no tag yet: which field the text belongs to is open
        self.scanned = 0  # how much of the undecided text was searched for tags already
        self.held = ""

    def split(self, text: str) -> tuple[str, str]:
        """(content, reasoning) for the next piece of content text."""
        buf = self.held + text if self.held else text
        self.held = ""
        content: list[str] = []
        reasoning: list[str] = []
        while buf:
            if self.fresh:
                stripped = buf.lstrip()
                if stripped.startswith(self.open_tag):
                    buf = stripped[len(self.open_tag) :]
                    self.fresh = False
                    self.undecided = False
                    self.thinking = True
                    continue
                if not stripped or self.open_tag.startswith(stripped):
                    self.held = buf  # whitespace, or the start of an opening tag: wait
                    break
                self.fresh = False
            if self.undecided:
                # hold the text until a tag says what it was: reasoning before a </think>
                # (the opening tag was in the prompt), content before a <think>, or content
                # when the stream ends without either
                start = self.scanned
                k_close = buf.find(self.close_tag, start)
                k_open = buf.find(self.open_tag, start)
                if k_close < 0 and k_open < 0:
                    self.held = buf
                    self.scanned = max(0, len(buf) - max(len(self.open_tag), len(self.close_tag)) + 1)
                    break
                self.undecided = False
                self.scanned = 0
                if k_open < 0 or 0 <= k_close < k_open:
                    reasoning.append(buf[:k_close])
                    buf = buf[k_close + len(self.close_tag) :]
                else:
                    content.append(buf[:k_open])
                    buf = buf[k_open + len(self.open_tag) :]
                    self.thinking = True
                continue
            tag = self.close_tag if self.thinking else self.open_tag
            k = buf.find(tag)
            out = reasoning if self.thinking else content
            if k >= 0:
                if k:
                    out.append(buf[:k])
                buf = buf[k + len(tag) :]
                self.thinking = not self.thinking
                continue
            h = _held_suffix(buf, tag)
            if h:
                self.held = buf[-h:]
                buf = buf[:-h]
            if buf:
                out.append(buf)
            break
        return "".join(content), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        """What is still held back, as (content, reasoning): the stream or the choice ended."""
        held, self.held = self.held, ""
        self.fresh = False
        self.undecided = False
        if not held:
            return "", ""
        return ("", held) if self.thinking else (held, "")


def _apply(sc: StreamChoice, content: str, reasoning: str) -> StreamChoice:
    d = sc.delta
    if reasoning and d.reasoning_content:
        reasoning = d.reasoning_content + reasoning
    delta = attrs.evolve(d, content=content or None, reasoning_content=reasoning or d.reasoning_content or None)
    return attrs.evolve(sc, delta=delta)


def split_think_tags(
    *,
    open_tag: str = "<think>",
    close_tag: str = "</think>",
    implicit_open: bool | None = None,
    choice: int | None = None,
) -> _Operator:
    """Move ``<think>…</think>`` out of ``delta.content`` into ``delta.reasoning_content``.

    For models that think inline (DeepSeek-R1 served by Together, Groq with
    ``reasoning_format=raw``, vLLM without a reasoning parser, QwQ, Qwen3): the reasoning
    arrives as ordinary content between tags. Opt in per model: apply it only to streams
    from such models (``rxllm serve`` can switch it on per deployment, see the README).

    Robust to how the text was chunked: a tag split anywhere (``<thi`` + ``nk>``) is held
    back until it is complete (text that merely looks like the start of a tag is released
    as soon as it is not one, or when the choice finishes or the stream ends). Robust to a
    missing opening tag (R1's chat template puts ``<think>`` in the prompt, so the answer
    starts inside the block), as chosen by ``implicit_open``:

    - ``None`` (the default): an answer starting with ``<think>`` streams its reasoning at
      once; an answer starting with anything else is held until a tag decides: text before
      a ``</think>`` was reasoning, text before a ``<think>`` was content, and an answer
      with no tag at all is content (released when the choice finishes). Always right, at
      the price of holding a tagless start back.
    - ``True``: the answer starts inside a think block: text streams as reasoning until the
      first ``</think>`` (a leading ``<think>`` is dropped). For models that always think.
    - ``False``: text is content until an explicit ``<think>``.

    Several think blocks in one answer are all moved; the tags themselves never reach either
    field. Chunks are passed on one for one (a chunk whose content was all reasoning, or is
    being held, gets ``content=None``), except that text still held back when the stream
    completes without a finish reason is sent in one extra chunk.

    ::

        content: -"<thi"-"nk>Hm</th"-"ink>Hi"-|
        split_think_tags()
        content: -None---None--------"Hi"----|
        reasoning: -None-"Hm"--------None----|

    Args:
        open_tag: The opening tag.
        close_tag: The closing tag.
        implicit_open: Whether the answer starts inside a think block: ``True``, ``False``,
            or ``None`` to decide from the text (see above).
        choice: Only this choice index (``None``: every choice).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """
    if not open_tag or not close_tag:
        raise ValueError("split_think_tags: open_tag and close_tag must be non-empty")

    def _split_think_tags(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            splitters: dict[int, _Splitter] = {}
            last: list[ChatCompletionChunk] = []

            def splitter(index: int) -> _Splitter:
                sp = splitters.get(index)
                if sp is None:
                    sp = splitters[index] = _Splitter(open_tag, close_tag, implicit_open)
                return sp

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    changed = False
                    choices = []
                    for sc in chunk.choices:
                        if choice is not None and sc.index != choice:
                            choices.append(sc)
                            continue
                        c = sc.delta.content
                        content = reasoning = ""
                        touched = False
                        if c and c.__class__ is str:
                            content, reasoning = splitter(sc.index).split(c)
                            touched = content != c
                        if sc.finish_reason is not None and sc.index in splitters:
                            fc, fr = splitters[sc.index].flush()
                            if fc or fr:
                                if not touched:
                                    content = c if c and c.__class__ is str else ""
                                content += fc
                                reasoning += fr
                                touched = True
                        if touched:
                            sc = _apply(sc, content, reasoning)
                            changed = True
                        choices.append(sc)
                    out = attrs.evolve(chunk, choices=tuple(choices)) if changed else chunk
                except Exception as exc:
                    observer.on_error(exc)
                    return
                if not last:
                    last.append(chunk)
                else:
                    last[0] = chunk
                observer.on_next(out)

            def on_completed() -> None:
                tail = []
                for index in sorted(splitters):
                    content, reasoning = splitters[index].flush()
                    if content or reasoning:
                        tail.append(_apply(StreamChoice(index=index), content, reasoning))
                if tail and last:
                    observer.on_next(attrs.evolve(last[0], choices=tuple(tail), usage=None))
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _split_think_tags
