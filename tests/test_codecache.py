"""``rxllm._codecache``: generated code compiled once, kept beside the bytecode, never stale."""

from __future__ import annotations

import builtins
import marshal
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm import _codecache
from rxllm._codecache import cache_path, compiled

SOURCE = "def twice(x):\n    return 2 * x\n"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache in a fresh folder, with bytecode writing allowed."""
    where = tmp_path / "__pycache__"
    monkeypatch.setattr(_codecache, "_FOLDER", where)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    return where


def _run(code: Any) -> Any:
    ns: dict[str, Any] = {}
    exec(code, ns)
    return ns["twice"]


def _no_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(builtins, "compile", refuse)


class TestCompiled:
    def test_the_second_call_reads_the_entry_instead_of_compiling(
        self, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first call writes one entry; with compile() gone the second still returns working code."""
        first = compiled(SOURCE, "<gen twice>")
        assert [p.name for p in folder.iterdir()] == [cache_path(SOURCE, "<gen twice>").name]
        _no_compile(monkeypatch)
        second = compiled(SOURCE, "<gen twice>")
        assert _run(first)(21) == _run(second)(21) == 42
        assert second.co_filename == "<gen twice>"

    def test_nothing_is_written_when_bytecode_writing_is_off(
        self, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under ``PYTHONDONTWRITEBYTECODE`` the code is compiled and the folder stays untouched."""
        monkeypatch.setattr(sys, "dont_write_bytecode", True)
        assert _run(compiled(SOURCE, "<gen twice>"))(4) == 8
        assert not folder.exists()

    @pytest.mark.parametrize("damage", [b"", b"\x00garbage", marshal.dumps(12), marshal.dumps(("a", "b", "c", "d"))])
    def test_a_damaged_entry_is_compiled_again_and_replaced(self, folder: Path, damage: bytes) -> None:
        """A truncated, foreign or garbled entry is not used: the source is compiled and the entry rewritten."""
        path = cache_path(SOURCE, "<gen twice>")
        folder.mkdir()
        path.write_bytes(damage)
        assert _run(compiled(SOURCE, "<gen twice>"))(5) == 10
        assert marshal.loads(path.read_bytes())[2] == SOURCE

    def test_an_entry_for_other_source_under_the_same_name_is_never_run(self, folder: Path) -> None:
        """An entry whose recorded source differs (a checksum collision, a hand edit) is ignored."""
        other = "def twice(x):\n    return 3 * x\n"
        path = cache_path(SOURCE, "<gen twice>")
        folder.mkdir()
        magic = _codecache.importlib.util.MAGIC_NUMBER
        path.write_bytes(marshal.dumps((magic, "<gen twice>", other, compile(other, "<gen twice>", "exec"))))
        assert _run(compiled(SOURCE, "<gen twice>"))(5) == 10

    def test_an_entry_from_another_interpreter_version_is_never_run(self, folder: Path) -> None:
        """An entry recorded under another bytecode magic number is compiled again."""
        path = cache_path(SOURCE, "<gen twice>")
        folder.mkdir()
        stale = (
            b"\x00\x00\r\n",
            "<gen twice>",
            SOURCE,
            compile("def twice(x):\n    return 0\n", "<gen twice>", "exec"),
        )
        path.write_bytes(marshal.dumps(stale))
        assert _run(compiled(SOURCE, "<gen twice>"))(5) == 10

    def test_a_folder_that_cannot_be_made_is_not_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A cache folder under a file (so it cannot exist) leaves compile() the only path, and it works."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        monkeypatch.setattr(_codecache, "_FOLDER", blocker / "__pycache__")
        monkeypatch.setattr(sys, "dont_write_bytecode", False)
        assert _run(compiled(SOURCE, "<gen twice>"))(7) == 14
        assert list(tmp_path.iterdir()) == [blocker]

    @settings(max_examples=50, deadline=None)
    @given(st.integers(-1000, 1000), st.text(alphabet="abcdefgh", min_size=1, max_size=6))
    def test_each_source_gets_its_own_entry(self, factor: int, name: str) -> None:
        """Different sources or file names never share an entry's path unless both are equal."""
        source = f"def twice(x):\n    return {factor} * x\n"
        assert cache_path(source, name) != cache_path(source + "\n", name)
        assert cache_path(source, name) != cache_path(source, name + "x")
        assert cache_path(source, name) == cache_path(source, name)


class TestImportUsesTheCache:
    def test_a_fresh_interpreter_reads_the_wire_codec_from_the_cache(self, tmp_path: Path) -> None:
        """After one import that writes bytecode, ``import rxllm`` compiles no generated code and decodes as before."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        probe = (
            "import builtins, sys\n"
            "real = builtins.compile\n"
            "seen = []\n"
            "def spy(source, filename, *a, **k):\n"
            "    seen.append(filename)\n"
            "    return real(source, filename, *a, **k)\n"
            "builtins.compile = spy\n"
            "import rxllm\n"
            "builtins.compile = real\n"
            "c = rxllm.ChatCompletionChunk.from_dict({'id': 'x', 'created': 1, 'model': 'm', 'object': "
            "'chat.completion.chunk', 'choices': [{'index': 0, 'delta': {'content': 'hi'}}]})\n"
            "print(sum(1 for f in seen if f.startswith('<rxllm.wire')), c.choices[0].delta.content)\n"
        )
        run = [sys.executable, "-c", probe]
        subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
        done = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
        assert done.stdout.split() == ["0", "hi"], done.stderr
