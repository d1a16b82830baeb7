"""``python -m benchmarks``: the whole comparison as one markdown table set.

    python -m benchmarks            # full run, a few minutes (2 cores)
    python -m benchmarks --quick    # about a minute
    python -m benchmarks --smoke    # seconds: CI's check that the benchmarks still run
    python -m benchmarks --only client|layers|proxy|burst|import|memory|dialects
    python -m benchmarks --only burst --burst-kind mock [--burst-streams N]   # chosen burst rows

Peers (``openai``, ``litellm`` with its proxy) come from the ``bench`` extra; install them in a
separate virtual environment (``pip install -e ".[bench]"``). A peer that is not installed gets
a row saying so; rxllm's rows always run, and a failing rxllm row makes the exit status 1.
``RXLLM_BENCH_LITELLM=/path/to/bin/litellm`` runs LiteLLM's proxy from another virtualenv.
Progress goes to stderr, the tables to stdout. Everything binds 127.0.0.1; LiteLLM runs with
telemetry off and its bundled cost map (see :data:`benchmarks._common.OFFLINE_ENV`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from typing import Any

from benchmarks import _ablation, _burst, _client, _proxy, _startup, bench_dialects
from benchmarks._common import apply_offline_env, fmt, machine, raise_fd_limit, table
from benchmarks._upstream import Upstream

SECTIONS = ("client", "layers", "proxy", "burst", "import", "memory", "dialects")

#: size -> (client cases, repeats, settle s, import runs, memory streams)
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "cases": [("text", "bulk", 300), ("tools", "bulk", 300), ("text", "p0.2", 40)],
        "repeats": 2,
        "paced_repeats": 2,
        "settle": 0.0,
        "import_runs": 1,
        "memory_streams": 100,
        "dialect_chunks": 300,
        "dialect_repeats": 3,
        "dialect_streams": 2,
        "dialect_rounds": 2,
    },
    "quick": {
        "cases": [("text", "bulk", 2000), ("tools", "bulk", 2000), ("text", "p0.5", 200)],
        "repeats": 3,
        "paced_repeats": 5,
        "settle": 0.02,
        "import_runs": 3,
        "memory_streams": 300,
        "dialect_chunks": 2000,
        "dialect_repeats": 15,
        "dialect_streams": 4,
        "dialect_rounds": 3,
    },
    "full": {
        "cases": [("text", "bulk", 5000), ("tools", "bulk", 5000), ("text", "p0.5", 500)],
        "repeats": 5,
        "paced_repeats": 15,
        "settle": 0.05,
        "import_runs": 5,
        "memory_streams": 1000,
        "dialect_chunks": 2000,
        "dialect_repeats": 30,
        "dialect_streams": 4,
        "dialect_rounds": 5,
    },
}

_CASE_TITLES = {"bulk": "bulk", "p": "paced"}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _case_title(case: tuple[str, str, int]) -> str:
    variant, mode, n = case
    how = "bulk" if mode == "bulk" else f"paced ({mode[1:]} ms apart)"
    return f"{variant}, {how}, {n:,} chunks"


def client_section(upstream: Upstream, size: dict[str, Any], failures: list[str]) -> str:
    cases = size["cases"]
    results = asyncio.run(
        _client.measure(upstream, cases, size["repeats"], size["settle"], _log, paced_repeats=size["paced_repeats"])
    )
    names = [name for name, _, _ in _client.implementations()]
    header = ["client (one stream, rebuilt response)"]
    for case in cases:
        header += [f"{_case_title(case)}: µs CPU/chunk", "x floor"]
    rows = []
    for name in names:
        row = [name]
        for case in cases:
            value = results[case][name]
            floor = results[case][names[0]]
            if isinstance(value, str):
                row += [value, ""]
                if name.startswith("rxllm") or name.startswith("floor"):
                    failures.append(f"{name} ({_case_title(case)}): {value}")
            else:
                ratio = value / floor if isinstance(floor, float) else float("nan")
                row += [fmt(value), fmt(ratio, 2) + "x"]
        rows.append(row)
    notes = (
        "Client CPU (`time.process_time`, all threads) per chunk received, median of "
        f"{size['repeats']} streams per bulk cell and {size['paced_repeats']} per paced cell, "
        "implementations alternating. *bulk*: the upstream writes "
        "as fast as it can (many chunks per read); *paced*: one chunk per network write, so every "
        "chunk costs a read and an event-loop wake-up, as with a real model. Each row rebuilds the "
        "text or tool calls, checked against what was sent."
    )
    return f"### Client: CPU per streamed chunk\n\n{table(header, rows)}\n\n{notes}\n"


def layers_section(upstream: Upstream, size: dict[str, Any], failures: list[str]) -> str:
    cases = size["cases"]
    impls = _ablation.implementations()
    results = asyncio.run(
        _client.measure(upstream, cases, size["repeats"], size["settle"], _log, impls, size["paced_repeats"])
    )
    names = [name for name, _, _ in impls]
    header = ["client path, layer by layer"]
    for case in cases:
        header += [f"{_case_title(case)}: µs CPU/chunk", "x floor", "+µs"]
    rows = []
    for i, name in enumerate(names):
        row = [name]
        for case in cases:
            value, floor = results[case][name], results[case][names[0]]
            below = results[case][names[i - 1]] if 0 < i < len(names) - 1 else None
            if isinstance(value, str):
                row += [value, "", ""]
                failures.append(f"layer {name} ({_case_title(case)}): {value}")
                continue
            ratio = value / floor if isinstance(floor, float) else float("nan")
            added = fmt(value - below) if isinstance(below, float) else ""
            row += [fmt(value), fmt(ratio, 2) + "x", added]
        rows.append(row)
    gc_row = ["GC share of row 6"]
    for case in cases:
        on, off = results[case][names[-2]], results[case][names[-1]]
        share = (on - off) / on if isinstance(on, float) and isinstance(off, float) and on else float("nan")
        gc_row += [f"{share * 100:.0f} %", "", ""]
    rows.append(gc_row)
    notes = (
        "Each row adds one layer of rxllm's client path to the row above (*+µs*: what that layer "
        "costs per chunk), measured like the client table (median of "
        f"{size['repeats']} streams bulk, {size['paced_repeats']} paced, rows alternating). Rows 1-5 "
        "rebuild the text on the fly; row 6 "
        "keeps every chunk and rebuilds the response with `stream_chunk_builder`; the GC share is "
        "(row 6 - row 6 with `gc.disable()`) / row 6."
    )
    return f"### Client path, layer by layer\n\n{table(header, rows)}\n\n{notes}\n"


def proxy_section(upstream: Upstream, size_name: str, failures: list[str], profile: str | None) -> str:
    results = _proxy.measure(upstream, size_name, _log, profile)
    levels = (1, 50) if size_name == "smoke" else (1, 50, 500)
    scen = _proxy.scenarios(size_name)
    header = [
        "proxy",
        "bulk: proxy CPU µs/chunk",
        "x floor",
        "bulk: chunks/s",
        "1-core ceiling chunks/s",
        "paced: proxy CPU µs/chunk",
        "x floor",
        *[f"first chunk, {n} stream{'s' if n > 1 else ''}: median / p95 ms" for n in levels],
        f"CPU ms per {scen['ttfc'][2]}-chunk stream ({levels[-1]} at once)",
        "peak RSS MB",
    ]
    floor = results.get(_proxy.FLOOR_NAME)

    def ratio(row: dict[str, Any], key: str) -> str:
        if key not in row:
            return ""
        if not isinstance(floor, dict) or not floor[key]["us_per_chunk"]:
            return "n/a"
        return fmt(row[key]["us_per_chunk"] / floor[key]["us_per_chunk"], 2) + "x"

    rows = []
    for name, row in results.items():
        if isinstance(row, str):
            rows.append([name, row, *[""] * (len(header) - 2)])
            if name.startswith(("rxllm", "floor")):
                failures.append(f"{name}: {row}")
            continue
        bulk, paced = row["bulk"], row.get("paced")
        cells = [
            name,
            fmt(bulk["us_per_chunk"]),
            ratio(row, "bulk"),
            fmt(bulk["chunks_per_s"], 0),
            fmt(1e6 / bulk["us_per_chunk"] if bulk["us_per_chunk"] else float("nan"), 0),
            fmt(paced["us_per_chunk"]) if paced else "",
            ratio(row, "paced"),
        ]
        for n in levels:
            r = row.get(f"ttfc{n}")
            cells.append(f"{fmt(r['ttfc_median_ms'])} / {fmt(r['ttfc_p95_ms'])}" if r else "")
        last = row.get(f"ttfc{levels[-1]}")
        cells.append(fmt(last["cpu_ms_per_stream"], 2) if last else "")
        cells.append(fmt(max(r["rss_mb"] for r in row.values()), 0))
        rows.append(cells)
    b, p, t = scen["bulk"], scen["paced"], scen["ttfc"]
    notes = (
        "The proxy process's own CPU (user + system) per chunk it forwarded. *bulk*: 2 to 10 concurrent "
        f"streams of {b[2]:,} chunks from an upstream writing as fast as it can; chunks/s is measured "
        "with client, proxy and upstream sharing the machine, the ceiling is 10⁶ / (µs per chunk). "
        f"*paced*: concurrent streams of {p[2]} chunks written 1 ms apart (one read and one write per "
        f"chunk). *first chunk*: that many streams started at once ({t[2]} chunks, 10 ms apart), time "
        "from sending the request to the first `data:` event. *x floor*: the ratio to the floor proxy "
        "(`benchmarks/_floor_proxy.py`: aiohttp, every event `orjson.loads`-ed and re-encoded, no routing, "
        "metering or logging). rxllm's first row renames every chunk to the client's model name (so it "
        "re-encodes); the passthrough row is the same process with the client asking for the name the "
        "upstream reports (bulk only: the upstream reports one model name). LiteLLM runs with its own "
        "defaults (uvloop); rxllm's proxy on the standard asyncio loop, and in the uvloop rows on uvloop "
        "(`general_settings.event_loop: uvloop`, `pip install 'rxllm[uvloop]'`)."
    )
    return f"### Proxy: CPU per forwarded chunk, throughput, time to first chunk\n\n{table(header, rows)}\n\n{notes}\n"


#: The burst row whose paced upstream is rxllm's mock provider inside the proxy (one socket per stream).
MOCK_NAME = "rxllm proxy, in-process mock upstream"

#: size -> burst rows: (kind, name, streams, ms between chunks, general_settings); each stream
#: lasts 19 paces, longer than the burst takes to arrive, so every stream is open at once.
#: Kind ``mock``: rxllm's proxy serving a ``mock/`` model with ``mock_delay`` (no upstream socket).
BURSTS: dict[str, list[tuple[str, str, int, int, dict[str, Any] | None]]] = {
    "smoke": [("rxllm", "rxllm proxy", 50, 20, None), ("mock", MOCK_NAME, 50, 20, None)],
    "quick": [
        ("floor", _proxy.FLOOR_NAME, 1000, 300, None),
        ("rxllm", "rxllm proxy", 1000, 300, None),
        ("rxllm", "rxllm proxy, gc_tuning off", 1000, 300, {"gc_tuning": False}),
        ("rxllm", "rxllm proxy on uvloop", 1000, 300, {"event_loop": "uvloop"}),
        ("litellm", "LiteLLM proxy (uvicorn, 1 worker)", 1000, 300, None),
        ("mock", MOCK_NAME, 1000, 300, None),
    ],
    "full": [
        ("floor", _proxy.FLOOR_NAME, 1000, 500, None),
        ("rxllm", "rxllm proxy", 1000, 500, None),
        ("rxllm", "rxllm proxy, gc_tuning off", 1000, 500, {"gc_tuning": False}),
        ("rxllm", "rxllm proxy on uvloop", 1000, 500, {"event_loop": "uvloop"}),
        ("litellm", "LiteLLM proxy (uvicorn, 1 worker)", 1000, 500, None),
        ("rxllm", "rxllm proxy", 10000, 4000, None),
        ("mock", MOCK_NAME, 10000, 4000, None),
    ],
}

#: Content chunks per burst stream: the client receives BURST_N + 3 (role, finish, usage).
BURST_N = 17

#: The mock row's answer: BURST_N + 1 words (role with the first), then finish and usage chunks.
_MOCK_TEXT = " ".join(f"word{i}" for i in range(BURST_N + 1))


def burst_section(
    upstream: Upstream,
    size_name: str,
    failures: list[str],
    profile: str | None,
    kinds: list[str] | None = None,
    streams_override: int | None = None,
) -> str:
    from benchmarks._upstream import chunk_count

    header = [
        "proxy",
        "streams at once",
        "open at once",
        "errors",
        "first chunk p50 / p99 ms",
        f"CPU ms per {chunk_count('text', BURST_N)}-chunk stream",
        "KB RSS per open stream",
        "GC share",
    ]
    rows = []
    capped = []
    for kind, name, wanted, pace, general in BURSTS[size_name]:
        if kinds and kind not in kinds:
            continue
        if streams_override is not None:
            wanted = streams_override
            pace = max(pace, wanted * 2 // 5)  # the arrival of the burst fits in a stream's life
        sockets = 1 if kind == "mock" else 2
        streams = _burst.max_streams(wanted, sockets)  # the sockets must fit the proxy's hard fd limit
        if streams < wanted:
            hard = _burst.fd_limits_for(wanted, sockets)[1]
            capped.append(f"{wanted:,} streams asked for, {streams:,} run: the hard fd limit is {hard:,}")
        label = f"{name} ({streams:,})"
        missing = _proxy.litellm_missing() if kind == "litellm" else None
        if (general or {}).get("event_loop") == "uvloop" and importlib.util.find_spec("uvloop") is None:
            missing = "uvloop not installed (pip install 'rxllm[uvloop]')"
        if missing:
            rows.append([label, f"{streams:,}", missing, *[""] * (len(header) - 3)])
            continue
        # the client asks for the name the upstream reports: rxllm forwards the events as they are
        scen = {_proxy.PASS_MODEL: ("text", f"p{pace}", BURST_N), "warm": ("text", "bulk", 5)}
        model = _proxy.PASS_MODEL
        mocks = None
        if kind == "mock":
            model = "burst-mock"
            mocks = {
                model: {"mock_response": _MOCK_TEXT, "mock_delay": pace / 1000},
                "burst-mock-warm": {"mock_response": _MOCK_TEXT},
            }
        try:
            with _proxy.Proxy(
                "rxllm" if kind == "mock" else kind,
                upstream,
                scen,
                profile if kind in ("rxllm", "mock") else None,
                # header_timeout: on 2 shared cores a client of a 10,000-stream burst may send its
                # headers tens of seconds after its connection was accepted
                general={
                    "listen_backlog": 16384,
                    "header_timeout": 300,
                    "global_max_parallel_requests": streams,
                    **(general or {}),
                },
                # rxllm raises its own soft limit; the peers are given theirs
                preexec=_burst.proxy_preexec(streams, default_soft=kind in ("rxllm", "mock"), sockets=sockets),
                gc_probe=kind != "litellm",
                mocks=mocks,
            ) as proxy:
                warm = "burst-mock-warm" if kind == "mock" else "warm"
                asyncio.run(_proxy._batch(proxy.url, warm, 20))  # imports, pools, caches
                r = _burst.run_burst(
                    proxy.url,
                    proxy.pid,
                    proxy.port,
                    model,
                    streams,
                    chunk_count("text", BURST_N),
                    gc_stats=proxy.gc_stats,
                )
        except Exception as exc:
            rows.append([label, f"{streams:,}", f"failed: {type(exc).__name__}", *[""] * (len(header) - 3)])
            _log(f"  burst {label}: {type(exc).__name__}: {str(exc)[:1500]}")
            if kind in ("rxllm", "mock"):
                failures.append(f"burst {label}: {type(exc).__name__}")
            continue
        _log(f"  burst {label}: done ({r['errors']} errors{': ' + r['first_error'] if r['errors'] else ''})")
        if kind in ("rxllm", "mock") and r["errors"]:
            failures.append(f"burst {label}: {r['errors']} errors, first: {r['first_error']}")
        open_at_once = f"{r['open_at_once']:,}" if r["open_at_once"] >= 0 else "n/a"
        gc_share = f"{r['gc_share'] * 100:.0f} %" if r["gc_share"] == r["gc_share"] else "n/a"
        rows.append(
            [
                label,
                f"{streams:,}",
                open_at_once,
                f"{r['errors']:,}",
                f"{fmt(r['ttfc_p50_ms'])} / {fmt(r['ttfc_p99_ms'])}",
                fmt(r["cpu_ms_per_stream"], 2),
                fmt(r["kb_per_open_stream"]),
                gc_share,
            ]
        )
    notes = (
        f"Streams of {chunk_count('text', BURST_N)} chunks from a paced upstream, all started at the same "
        f"instant by {_burst.PER_CLIENT:,}-stream client processes. *open at once*: the proxy's "
        "`active_requests` when every stream had its first chunk. *CPU per stream*: the proxy process's "
        "CPU over the whole burst / streams (setup, relaying, teardown, the log line). *KB RSS per open "
        "stream*: (RSS with every stream open - RSS before) / streams. *GC share*: the proxy's time in "
        "garbage collection (`gc.callbacks`) / its CPU over the burst. rxllm's proxy starts with a soft fd "
        "limit of 1,024 and raises its own; the floor and LiteLLM are started with soft = hard. "
        f"*{MOCK_NAME}*: the same proxy serving a `mock/` model with `mock_delay` (the same pacing, "
        "produced inside the proxy), so each stream holds one socket, not two: the proxy's own "
        "capacity where the hard fd limit cannot hold two per stream."
    )
    if capped:
        notes += " Capped: " + "; ".join(capped) + " (it cannot be raised here)."
    return f"### Proxy burst: many short streams at once\n\n{table(header, rows)}\n\n{notes}\n"


def import_section(size: dict[str, Any], failures: list[str]) -> str:
    results = _startup.import_times(size["import_runs"], _log)
    rows = []
    for module, value in results.items():
        rows.append([f"`import {module}`", value if isinstance(value, str) else fmt(value, 0)])
        if module == "rxllm" and isinstance(value, str):
            failures.append(f"import rxllm: {value}")
    notes = (
        f"Median of {size['import_runs']} fresh interpreters, interpreter start-up excluded, each module's "
        "bytecode written by one untimed import first (as pip compiles an installed package's)."
    )
    return f"### Import time\n\n{table(['module', 'ms'], rows)}\n\n{notes}\n"


def memory_section(upstream: Upstream, size: dict[str, Any], failures: list[str]) -> str:
    n = size["memory_streams"]
    base = upstream.base("text", "p1000", 30)
    results = _startup.memory(base, n, _log)
    names = {
        "aiohttp": "bare aiohttp response (floor)",
        "openai": "openai `AsyncOpenAI` stream",
        "rxllm": "rxllm `acompletion(stream=True)`",
    }
    rows = []
    for impl, value in results.items():
        if isinstance(value, str):
            rows.append([names[impl], value, "", ""])
            if impl == "rxllm":
                failures.append(f"memory rxllm: {value}")
        else:
            rows.append(
                [names[impl], fmt(value["kb_per_stream"]), fmt(value["before_mb"], 0), fmt(value["during_mb"], 0)]
            )
    header = ["client", "KB per open stream", "RSS before, MB", f"RSS with {n:,} open, MB"]
    notes = (
        f"{n:,} concurrent streams opened in one fresh process per client, each holding its first chunk "
        "(the upstream sends one chunk a second); (RSS with them open - RSS before) / streams."
    )
    return f"### Memory per open stream\n\n{table(header, rows)}\n\n{notes}\n"


def dialects_section(upstream: Upstream, size: dict[str, Any], failures: list[str]) -> str:
    n, repeats, rounds = size["dialect_chunks"], size["dialect_repeats"], size["dialect_rounds"]
    parts = []
    for what, make in (
        ("encoders", lambda: bench_dialects.table(n, repeats)),
        ("proxy", lambda: bench_dialects.proxy_table(upstream, n, size["dialect_streams"], rounds)),
    ):
        try:
            parts.append(make())
        except Exception as exc:  # a broken dialect is a failing rxllm row
            failures.append(f"dialects ({what}): {type(exc).__name__}: {exc}")
            parts.append(f"dialects ({what}) failed: {type(exc).__name__}")
    notes = (
        "First table: each dialect's event encoder over the same pre-parsed chunks, one whole stream "
        "per sample (start and end events included), median CPU µs per chunk. Second: `rxllm serve` "
        "in front of the local upstream, the same text stream read through each dialect's route; the "
        "proxy process's CPU per upstream chunk, median of rounds with the routes alternating. *x chat* "
        "is the ratio to chat completions (`python -m benchmarks.bench_dialects` runs this section alone)."
    )
    return f"### Dialects: CPU per chunk, encoder and proxy\n\n{parts[0]}\n\n{parts[1]}\n\n{notes}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size_group = parser.add_mutually_exclusive_group()
    size_group.add_argument("--smoke", action="store_true", help="seconds-long run (CI)")
    size_group.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument("--profile-proxy", metavar="FILE", help="run rxllm's proxy under cProfile, writing FILE")
    parser.add_argument(
        "--burst-kind",
        choices=("floor", "rxllm", "litellm", "mock"),
        action="append",
        help="run only these burst rows (repeatable; rxllm's mock-upstream row is `mock`)",
    )
    parser.add_argument("--burst-streams", type=int, metavar="N", help="every burst row with N streams")
    args = parser.parse_args(argv)
    size_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    size = SIZES[size_name]
    sections = args.only or list(SECTIONS)

    apply_offline_env()
    raise_fd_limit()
    started = time.perf_counter()
    failures: list[str] = []
    out = [
        f"## rxllm benchmarks ({size_name} run)\n",
        f"Machine: {machine()}.\n",
        f"Reproduce: `python -m benchmarks{'' if size_name == 'full' else ' --' + size_name}` "
        '(peers: `pip install -e ".[bench]"` in a separate virtualenv).\n',
    ]
    with Upstream() as upstream:
        if "client" in sections:
            out.append(client_section(upstream, size, failures))
        if "layers" in sections:
            out.append(layers_section(upstream, size, failures))
        if "proxy" in sections:
            out.append(proxy_section(upstream, size_name, failures, args.profile_proxy))
        if "burst" in sections:
            out.append(
                burst_section(upstream, size_name, failures, args.profile_proxy, args.burst_kind, args.burst_streams)
            )
        if "import" in sections:
            out.append(import_section(size, failures))
        if "memory" in sections:
            out.append(memory_section(upstream, size, failures))
        if "dialects" in sections:
            out.append(dialects_section(upstream, size, failures))
    out.append(f"_Run took {time.perf_counter() - started:.0f} s._\n")
    print("\n".join(out))
    if failures:
        _log("rxllm rows failed:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
