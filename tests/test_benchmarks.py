"""The benchmarks cannot rot: ``python -m benchmarks --smoke`` runs and prints rxllm's rows with numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_NUMBER = r"[0-9][0-9,]*\.[0-9]+"


def _row(output: str, prefix: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith("| " + prefix)]
    assert rows, f"no row starting with {prefix!r} in:\n{output}"
    return rows[0]


def test_smoke_run_prints_rxllm_rows_with_numbers(tmp_path: Path) -> None:
    # Only the benchmarks package goes on the path, not the repository root: rxllm must be the
    # installed package (the source tree's rxllm/ has no operators/ mapping).
    shelf = tmp_path / "path"
    shelf.mkdir()
    (shelf / "benchmarks").symlink_to(ROOT / "benchmarks", target_is_directory=True)
    extra = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(shelf), extra) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    for heading in ("### Client", "### Client path, layer by layer", "### Proxy", "### Proxy burst",
                    "### Import time", "### Memory per open stream", "### Dialects"):  # fmt: skip
        assert heading in out
    # the layer table: every layer has a number and a ratio in every case, and the GC share is a percentage
    for prefix in ("1. floor", "2. + decode", "3. + parse", "4. + Observable", "5. + operators", "6. + builder"):
        row = _row(out, prefix)
        assert len(re.findall(_NUMBER + r" \| " + _NUMBER + "x", row)) == 3, row
    assert re.search(r"\| GC share of row 6 \| -?[0-9]+ %", out)
    # client: the floor and rxllm's rows have a number and a ratio in every column
    for prefix in ("floor:", "rxllm `acompletion(stream=True)`", "rxllm `stream()`", "rxllm provider"):
        row = _row(out, prefix)
        assert len(re.findall(_NUMBER + r" \| " + _NUMBER + "x", row)) == 3, row
    assert re.search(r"\| floor:[^|]*\| " + _NUMBER + r" \| 1\.00x", out)
    # proxy: rxllm's proxy has CPU per chunk, throughput and time to first chunk
    proxy = _row(out, "rxllm proxy (aiohttp")
    assert len(re.findall(_NUMBER, proxy)) >= 6, proxy
    # beside the floor proxy, as a ratio; the passthrough row too
    assert re.search(r"\| floor proxy[^|]*\| " + _NUMBER + r" \| 1\.00x", out)
    assert re.search(_NUMBER + r" \| " + _NUMBER + "x", _row(out, "rxllm proxy, passthrough"))
    # the burst: no errors, first-chunk times, CPU per stream, memory per open stream, GC share
    burst = _row(out, "rxllm proxy (50)")
    assert re.search(r"\| 50 \| [0-9,]+ \| 0 \| " + _NUMBER + " / " + _NUMBER + r" \| " + _NUMBER, burst), burst
    assert re.search(r"[0-9]+ % \|$", burst), burst
    # and its in-process mock upstream row (one socket per stream): every stream open at once, no errors
    mock = _row(out, "rxllm proxy, in-process mock upstream (50)")
    assert re.search(r"\| 50 \| 50 \| 0 \| " + _NUMBER, mock), mock
    assert re.search(r"\| `import rxllm` \| [0-9,]+ \|", out)
    assert re.search(r"\| rxllm `acompletion\(stream=True\)` \| " + _NUMBER, out)
    # dialects: every encoder has a number and a ratio to chat completions
    for prefix in ("chat completions SSE", "Responses events", "Messages events", "UI message stream ("):
        assert re.search(_NUMBER + r" \| " + _NUMBER + "x", _row(out, prefix))
    for prefix in ("chat completions (`", "Responses (`", "Messages (`", "UI message stream (`/api"):
        assert re.search(_NUMBER + r" \| " + _NUMBER + "x", _row(out, prefix))
    # a peer is either measured or says why not, never silently missing
    litellm = _row(out, "litellm `acompletion")
    assert "not installed" in litellm or re.search(_NUMBER, litellm), litellm
