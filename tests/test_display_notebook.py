"""rxllm.display in a real notebook kernel: one output per stream, updated in place, throttled.

The notebook is built here and executed with nbclient on this interpreter. The client counts
the kernel's ``update_display_data`` messages per cell; the assertions use the final outputs
and those counts, with intervals chosen so the counts do not depend on the machine's speed
(interval 0: one update per chunk; interval 60 s: the first and the final frame only).
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

HERE = Path(__file__).resolve().parent
WORDS = " ".join(f"w{i}" for i in range(30))  # mock/echo streams it as 30 chunks, a finish chunk and a usage chunk

SETUP = f"""
import rxllm
from rxllm import operators as ops
messages = [{{"role": "user", "content": {WORDS!r}}}]
def source(**kw):
    return rxllm.stream("mock/echo", messages, stream_options={{"include_usage": True}}, **kw)
"""
CELLS = {
    "every_chunk": "view = rxllm.display(source(), interval=0)\nprint('updates', view.updates)",
    "throttled": "view = rxllm.display(source(), interval=60)\nprint('updates', view.updates)",
    "async": "view = await rxllm.display.display_async(source(mock_delay=0.001), interval=60)\n"
    "print('updates', view.updates)",
    "operator": "ended = []\n"
    "response = await source().pipe(ops.display(0, on_end=ended.append), ops.to_response())\n"
    "print('updates', ended[0].updates, response.choices[0].message.content == messages[0]['content'])",
    "error": "view = rxllm.display(source(mock_fail_after=3), interval=0)\nprint('error', type(view.error).__name__)",
}


class _ThisInterpreter(KernelSpecManager):  # type: ignore[misc]
    """Every kernel name resolves to ipykernel on the running interpreter."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3",
            language="python",
            resource_dir=str(HERE),
        )


class CountingClient(NotebookClient):  # type: ignore[misc]
    """Counts update_display_data messages per cell index."""

    updates: Counter[int]

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] == "update_display_data":
            self.updates[cell_index] += 1
        return super().process_message(msg, cell, cell_index)


@functools.cache
def executed() -> tuple[dict[str, Any], dict[str, int]]:
    """The executed cells by name, and their update counts (run once per session)."""
    names = list(CELLS)
    nb = new_notebook(cells=[new_code_cell(SETUP), *(new_code_cell(CELLS[n]) for n in names)])
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
    client = CountingClient(nb, km=km, timeout=60, allow_errors=False, resources={"metadata": {"path": str(HERE)}})
    client.updates = Counter()
    client.execute()
    cells = {name: nb.cells[i + 1] for i, name in enumerate(names)}
    counts = {name: client.updates[i + 1] for i, name in enumerate(names)}
    return cells, counts


def displays(cell: Any) -> list[Any]:
    return [o for o in cell.outputs if o.output_type == "display_data"]


def printed(cell: Any) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


class TestDisplayInANotebook:
    def test_one_output_updated_once_per_chunk_without_throttling(self) -> None:
        """interval=0: one display output, updated once per chunk (32), ending with text and footer."""
        cells, counts = executed()
        cell = cells["every_chunk"]

        [output] = displays(cell)
        assert counts["every_chunk"] == 32
        assert printed(cell).split() == ["updates", "32"]
        final = output.data["text/plain"]
        assert final.startswith(WORDS + "\n")
        assert "completion tokens" in final and "TTFT" in final and "tokens/s" in final and "completed" in final
        assert "rxllm-live" in output.data["text/html"] and "tokens/s" in output.data["text/html"]

    def test_throttled_to_the_first_and_last_frame(self) -> None:
        """A long interval: the same stream is drawn twice (one update) and still ends complete."""
        cells, counts = executed()

        for name in ("throttled", "async"):
            cell = cells[name]
            [output] = displays(cell)
            assert counts[name] == 1, name
            assert printed(cell).split() == ["updates", "1"]
            assert output.data["text/plain"].startswith(WORDS + "\n")
            assert output.data["text/plain"].rstrip().endswith("completed")

    def test_operator_form_in_a_pipeline(self) -> None:
        """displayed() draws beside a to_response() pipeline awaited in the cell."""
        cells, counts = executed()
        cell = cells["operator"]

        [output] = displays(cell)
        assert printed(cell).split() == ["updates", "32", "True"]
        assert counts["operator"] == 32
        assert output.data["text/plain"].startswith(WORDS)

    def test_an_error_is_shown_in_the_output(self) -> None:
        """A stream that fails mid-way shows its partial text and the error in the same output."""
        cells, _ = executed()
        cell = cells["error"]

        [output] = displays(cell)
        assert printed(cell).split() == ["error", "APIConnectionError"]
        assert output.data["text/plain"].startswith("w0 w1 w2\nerror: APIConnectionError")


def test_notebook_format_is_valid() -> None:
    """The executed notebook validates (outputs and display ids are well formed)."""
    cells, _ = executed()

    nbformat.validate(new_notebook(cells=list(cells.values())))


@functools.cache
def observability() -> Any:
    """notebooks/04_observability.ipynb after running all its cells."""
    path = HERE.parent / "notebooks" / "04_observability.ipynb"
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
    client = CountingClient(
        nb, km=km, timeout=60, allow_errors=False, resources={"metadata": {"path": str(path.parent)}}
    )
    client.updates = Counter()
    client.execute()
    return nb


class TestObservabilityNotebook:
    def test_latency_plot_comes_from_tap_otel_spans_and_histograms(self) -> None:
        """Notebook 04 reads one OpenTelemetry span per stream and the GenAI TTFT histogram."""
        nb = observability()
        out = "".join(printed(c) for c in nb.cells if c.cell_type == "code")

        assert "ops.tap_otel(" in "".join(c.source for c in nb.cells)
        assert "one span per stream: True | span name: chat gpt-4o-mini" in out
        assert "gen_ai.client.operation.time_to_first_chunk: 6 streams" in out

    def test_ends_with_one_live_view(self) -> None:
        """The notebook's last cell shows rxllm.display's single live output with its footer."""
        last = observability().cells[-1]

        [output] = displays(last)
        assert "rxllm-live" in output.data["text/html"]
        assert output.data["text/plain"].rstrip().endswith("completed")
