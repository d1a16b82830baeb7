"""The notebooks in ``notebooks/`` run headless and offline, and show what they claim to show.

Each notebook is executed once per test session with nbclient, on a kernel that runs *this*
interpreter (``sys.executable -m ipykernel_launcher``), whatever kernelspecs the machine has
installed, so a fresh ``python -m venv`` + ``pip install ".[test]"`` tests its own rxllm. Any
cell error fails the test with the cell's traceback. The tests then assert on a few outputs
per notebook that prove behaviour, and that the committed files carry no outputs.
"""

from __future__ import annotations

import base64
import functools
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ["01_quickstart", "02_operators", "03_async_service", "04_observability"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _ThisInterpreter(KernelSpecManager):  # type: ignore[misc]
    """Resolves every kernel name to ipykernel on the running interpreter."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python 3 ({sys.executable})",
            language="python",
            resource_dir=str(NOTEBOOK_DIR),
        )


def _path(name: str) -> Path:
    return NOTEBOOK_DIR / f"{name}.ipynb"


def execute(nb: Any) -> Any:
    """Run every cell of ``nb`` in place on this interpreter's kernel; raise on a cell error."""
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
    client = NotebookClient(
        nb,
        km=km,
        timeout=30,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()
    return nb


@functools.cache
def executed(name: str) -> Any:
    """The notebook after running all its cells (once per session); raises on a cell error."""
    return execute(nbformat.read(_path(name), as_version=4))


def text_of(nb: Any) -> str:
    """Everything the notebook printed or displayed as text, independent of output batching.

    The kernel may split one cell's stdout into any number of stream outputs; their texts are
    concatenated exactly (they carry their own newlines). Each displayed value stands on its
    own line, and each cell's text ends with a newline.
    """
    cells: list[str] = []
    for cell in nb.cells:
        streams: dict[str, list[str]] = {}
        shown: list[str] = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                streams.setdefault(out.name, []).append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                shown.append(out.data.get("text/plain", ""))
        parts = ["".join(texts) for texts in streams.values()] + shown
        cells.extend(part if part.endswith("\n") else part + "\n" for part in parts)
    return "".join(cells)


def images_of(nb: Any) -> list[bytes]:
    """The PNG images the notebook displayed."""
    return [
        base64.b64decode(out.data["image/png"])
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type in ("execute_result", "display_data") and "image/png" in out.get("data", {})
    ]


class TestCommittedNotebooks:
    def test_the_four_notebooks_exist(self) -> None:
        """notebooks/ holds exactly the four documented notebooks."""
        found = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))

        assert found == EXPECTED

    @pytest.mark.parametrize("name", EXPECTED)
    def test_committed_without_outputs(self, name: str) -> None:
        """No stale outputs or execution counts are committed, and the metadata is minimal."""
        nb = nbformat.read(_path(name), as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]

        assert code
        assert all(c.outputs == [] for c in code)
        assert all(c.execution_count is None for c in code)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert set(nb.metadata) <= {"kernelspec", "language_info"}
        assert all(not c.metadata for c in nb.cells)

    @pytest.mark.parametrize("name", EXPECTED)
    def test_uses_no_network_or_keys(self, name: str) -> None:
        """Notebooks use mock models or local servers only: no keys, no remote hosts."""
        source = "\n".join(c.source for c in nbformat.read(_path(name), as_version=4).cells)

        assert "api_key" not in source
        assert "https://" not in source


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_without_errors(name: str) -> None:
    """Every cell of the notebook executes without an error."""
    nb = executed(name)

    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


class TestHarness:
    def test_text_does_not_depend_on_stream_batching(self) -> None:
        """The same stdout split into one or many stream outputs reads the same."""
        one = nbformat.from_dict(
            {"cells": [{"outputs": [{"output_type": "stream", "name": "stdout", "text": "a\nb\nc\n"}]}]}
        )
        many = nbformat.from_dict(
            {
                "cells": [
                    {
                        "outputs": [
                            {"output_type": "stream", "name": "stdout", "text": "a\n"},
                            {"output_type": "stream", "name": "stdout", "text": "b\nc"},
                            {"output_type": "stream", "name": "stdout", "text": "\n"},
                        ]
                    }
                ]
            }
        )

        assert text_of(one) == text_of(many) == "a\nb\nc\n"

    def test_kernel_is_this_interpreter(self) -> None:
        """Notebooks run on the interpreter running the tests, not on some installed kernelspec."""
        nb = execute(new_notebook(cells=[new_code_cell("import sys, rxllm.operators; print(sys.executable)")]))

        assert text_of(nb).split() == [sys.executable]

    def test_a_cell_error_fails(self) -> None:
        """A raising cell stops the run with CellExecutionError naming the error."""
        nb = new_notebook(cells=[new_code_cell("import rxllm\nrxllm.stream('nosuch/model', [])")])

        with pytest.raises(CellExecutionError, match="BadRequestError"):
            execute(nb)


class TestQuickstart:
    def test_sync_streaming_and_rebuild(self) -> None:
        """The sync stream prints piece by piece and stream_chunk_builder rebuilds the same response."""
        out = text_of(executed("01_quickstart"))

        assert "Hey,\n how's\n it\n going?" in out
        assert "rebuilt matches response.response: True" in out
        assert "to_iterator(): ['one', ' two', ' three', ' four', ' five']" in out
        assert "two requests: True" in out

    def test_looping_model_and_callbacks(self) -> None:
        """The looping model raises InternalServerError after the limit; the cost callback fires."""
        out = text_of(executed("01_quickstart"))

        assert "InternalServerError (status 500) after 99 chunks" in out  # the 100th identical chunk raises
        assert "Streaming response cost: " in out and "outcome: completed" in out
        assert "RateLimitError 429" in out


class TestOperators:
    def test_tool_call_ready_before_stream_end(self) -> None:
        """accumulate_tool_calls hands over the first tool call while the model still streams."""
        out = text_of(executed("02_operators"))

        assert "first tool started before the stream ended: True" in out
        assert "get_weather({'city': 'Paris', 'unit': 'celsius'}) -> ok" in out

    def test_looping_model_retried(self) -> None:
        """The looping model raised InternalServerError and the retry produced the real answer."""
        out = text_of(executed("02_operators"))

        assert "retrying (attempt 2) after InternalServerError" in out
        assert "final answer: Sunny, 21°C in Paris" in out
        assert "requests made: 2" in out
        assert "retry_stream: Second time lucky." in out
        assert "fallback: Answer from the backup model." in out

    def test_costs_timeouts_and_share(self) -> None:
        """tap_cost reports (cancelled too), the three timeouts, and share() making one request."""
        out = text_of(executed("02_operators"))

        assert "cancelled after" in out
        # the timeouts run in virtual time: exact, whatever the machine is doing
        assert "first_chunk_timeout: no chunk arrived within 1 s of the request (first_chunk_timeout)\n" in out
        assert "no content, reasoning or tool-call data for 2 s after 1 chunks (stall_timeout)\n" in out
        assert "   partial response: 'one'\n" in out
        assert "the stream did not finish within 7 s; 2 chunks arrived (deadline)\n" in out
        assert "   partial response: 'one two'\n" in out
        assert "requests made for three consumers: 1" in out


class TestAsyncService:
    def test_sse_client_receives_the_same_text(self) -> None:
        """The browser-style client assembles exactly the streamed text, for concurrent clients too."""
        out = text_of(executed("03_async_service"))

        assert "SSE client text == direct stream text: True" in out
        assert "every client got its own text: True" in out

    def test_errors_and_disconnects(self) -> None:
        """A mid-stream error arrives as an error event; a client leaving cancels the upstream."""
        out = text_of(executed("03_async_service"))

        assert "'type': 'server_error'" in out
        assert "server report: cancelled after" in out
        assert "server stopped" in out


class TestObservability:
    def test_three_plots(self) -> None:
        """The timeline, latency/throughput and cost plots are displayed as PNG images."""
        images = images_of(executed("04_observability"))

        assert len(images) == 3
        assert all(img.startswith(PNG_MAGIC) and len(img) > 5000 for img in images)

    def test_latency_numbers(self) -> None:
        """TTFT follows the simulated thinking times; every model got a cost."""
        out = text_of(executed("04_observability"))

        assert "6 concurrent streams, 144 tokens" in out
        assert "quickest to first token: snappy | slowest: thinker" in out
        assert "cheapest: " in out and "priciest: " in out
        assert out.count("rxllm.stream model=gpt-4o-mini outcome=completed") == 3


class TestEventLayerCells:
    def test_events_structured_output_smoothing_and_budget(self) -> None:
        """Notebook 02's event-layer cells: events, structured output, smoothing in virtual time, a budget cut."""
        out = text_of(executed("02_operators"))

        assert "done      #0 get_weather {'city': 'Paris', 'unit': 'celsius'}\n" in out
        assert "partial={'city': 'Pa'}" in out
        assert "StructuredFinal Forecast(city='Paris', celsius=21, summary='Sunny, light wind')\n" in out
        assert "invalid: ('$.celsius: greater than 60',) raw: {\"celsius\": 99}\n" in out
        assert "t=0: 'The '\nt=1: 'quick '\nt=2: 'brown '\nt=3: 'fox '\n" in out
        assert "t=11: 'dog.'\nt=11: '<end>'\n" in out
        assert "cut off: max_output_tokens=30, used 31\n" in out
        assert "chunks produced upstream: 19 of 101, passed on: 18\n" in out
        assert "finish_reason=None" in out
