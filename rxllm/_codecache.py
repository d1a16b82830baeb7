"""Compiled generated code, kept beside the package's bytecode so ``import rxllm`` skips compiling it.

:mod:`rxllm._wire` generates each wire class's decoder and encoder as Python source at import
time; compiling that source was the largest single cost of ``import rxllm`` (about a tenth of
it). :func:`compiled` stores the code object the way Python stores a module's bytecode: in the
package's ``__pycache__``, one file per source (named by a checksum), holding the source, the
file name and the interpreter's bytecode magic number beside the code; an entry is used only
when all three equal what is asked for, so a changed table, another Python or a checksum
collision never runs stale code. Nothing is written when ``sys.dont_write_bytecode`` is set
(``PYTHONDONTWRITEBYTECODE``, ``python -B``) or the folder is not writable; an unreadable or
damaged entry is compiled again. The code is still verified by its user (``_wire`` runs every
decoder on a probe), exactly as freshly compiled code is.
"""

from __future__ import annotations

import binascii
import importlib.util
import marshal
import os
import sys
from pathlib import Path
from types import CodeType

__all__ = ["cache_path", "compiled"]

#: Where entries live: the package's own bytecode folder.
_FOLDER = Path(__file__).resolve().parent / "__pycache__"


def cache_path(source: str, filename: str) -> Path:
    """The entry that would hold ``source`` compiled under ``filename`` for this interpreter.

    (A checksum, not a cryptographic hash: hashlib costs milliseconds to import, and the
    entry itself says what it holds.)
    """
    key = binascii.crc32(source.encode(), binascii.crc32(filename.encode()))
    return _FOLDER / f"rxllm-generated-{key:08x}-{len(source)}.{sys.implementation.cache_tag}.bin"


def compiled(source: str, filename: str) -> CodeType:
    """``compile(source, filename, "exec")``, read from the cache when it holds it.

    Args:
        source: Python source of a module body.
        filename: The name tracebacks show for it (part of the cache key).

    Returns:
        The code object.
    """
    path = cache_path(source, filename)
    want = (importlib.util.MAGIC_NUMBER, filename, source)
    try:
        entry = marshal.loads(path.read_bytes())  # noqa: S302 (the package's own __pycache__, trusted as its .pyc files are)
    except (OSError, EOFError, ValueError, TypeError):
        entry = None
    if isinstance(entry, tuple) and len(entry) == 4 and entry[:3] == want and isinstance(entry[3], CodeType):
        return entry[3]
    code = compile(source, filename, "exec")
    if not sys.dont_write_bytecode:
        _store(path, marshal.dumps((*want, code)))
    return code


def _store(path: Path, data: bytes) -> None:
    """Write an entry atomically (a reader never sees half of one); any failure is ignored."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
