"""A small mutation check: does the suite notice one-token changes to the core modules?

Not part of the suite (it takes minutes). Run it from a checkout whose package is installed
in editable mode (``pip install -e ".[test]"``), on a clean work tree::

    python tests/mutation_check.py                 # every core module, 8 mutants each
    python tests/mutation_check.py --per-module 20 --seed 3 --module rxllm/usage.py

For each module it lists the tokens a plausible slip would change (a comparison flipped,
``and``/``or`` swapped, ``+``/``-`` swapped, an integer off by one, ``True``/``False``
swapped, ``is``/``is not`` swapped), draws a seeded sample, and for each mutant rewrites the
file, runs the tests that cover the module (``pytest -x -q``), and restores the file. A
mutant is *killed* when those tests fail. The kill rate and every survivor (file, line, the
change) are printed; a survivor is a behaviour no test pins, or an equivalent mutant.
"""

from __future__ import annotations

import argparse
import io
import random
import signal
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: core module -> the test files that cover it
CORE: dict[str, list[str]] = {
    "rxllm/builder.py": ["tests/test_builder.py", "tests/operators/test_to_response.py", "tests/test_pinned.py"],
    "rxllm/usage.py": ["tests/test_builder.py", "tests/test_pinned.py", "tests/operators/test_tap_cost.py"],
    "rxllm/sse.py": ["tests/test_sse.py", "tests/test_pinned.py"],
    "rxllm/pricing.py": ["tests/test_pricing.py", "tests/operators/test_tap_cost.py"],
    "rxllm/settings.py": ["tests/operators/test_detect_repeated_chunks.py", "tests/test_pinned.py"],
    "rxllm/proxy/auth.py": ["tests/test_pinned.py", "tests/proxy"],
    "rxllm/providers/openai.py": [
        "tests/providers/test_openai_provider.py",
        "tests/providers/test_pinned_providers.py",
    ],
    "rxllm/providers/anthropic.py": [
        "tests/providers/test_anthropic_provider.py",
        "tests/providers/test_pinned_providers.py",
    ],
    "rxllm/providers/gemini.py": ["tests/providers/test_gemini_provider.py"],
    "operators/_detect_repeated_chunks.py": ["tests/operators/test_detect_repeated_chunks.py"],
    "operators/_accumulate_tool_calls.py": ["tests/operators/test_accumulate_tool_calls.py"],
    "operators/_tap_cost.py": ["tests/operators/test_tap_cost.py"],
    "operators/_timeouts.py": ["tests/operators/test_timeouts.py"],
    "operators/_retry.py": ["tests/operators/test_retry.py"],
}

_SWAPS = {
    "<": "<=",
    "<=": "<",
    ">": ">=",
    ">=": ">",
    "==": "!=",
    "!=": "==",
    "+": "-",
    "-": "+",
    "and": "or",
    "or": "and",
    "True": "False",
    "False": "True",
}


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    col: int
    old: str
    new: str

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        assert text[self.col : self.col + len(self.old)] == self.old
        lines[self.line - 1] = text[: self.col] + self.new + text[self.col + len(self.old) :]
        return "".join(lines)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.old!r} -> {self.new!r}"


def mutants_of(path: str, source: str) -> list[Mutant]:
    """Every one-token mutation of ``source`` outside strings, comments and annotations' arrows."""
    found: list[Mutant] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        (line, col), text = tok.start, tok.string
        if tok.type in (tokenize.OP, tokenize.NAME) and text in _SWAPS:
            if text in ("+", "-") and i and tokens[i - 1].string in ("(", ",", "=", "[", "return"):
                continue  # a unary sign or a keyword default: rarely a slip
            found.append(Mutant(path, line, col, text, _SWAPS[text]))
        elif tok.type == tokenize.NAME and text == "is":
            nxt = tokens[i + 1].string if i + 1 < len(tokens) else ""
            if nxt == "not":
                end = tokens[i + 1].end[1]
                found.append(Mutant(path, line, col, source.splitlines()[line - 1][col:end], "is"))
            else:
                found.append(Mutant(path, line, col, "is", "is not"))
        elif tok.type == tokenize.NUMBER and text.isdigit() and len(text) < 6:
            found.append(Mutant(path, line, col, text, str(int(text) + 1)))
    return found


def run_tests(tests: list[str], timeout: float) -> bool:
    """Whether the tests pass (a timeout counts as a failure: the mutant was noticed)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-module", type=int, default=8, help="mutants drawn per module (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--module", action="append", help="only these modules (repeatable)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per test run")
    args = parser.parse_args(argv)

    modules = args.module or list(CORE)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", *modules], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    if dirty.strip():
        print(f"refusing to run: these modules have uncommitted changes:\n{dirty}", file=sys.stderr)
        return 2
    # a SIGTERM must still restore the file being mutated (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rng = random.Random(args.seed)
    killed = total = 0
    survivors: list[Mutant] = []
    started = time.monotonic()
    for module in modules:
        path = ROOT / module
        original = path.read_text(encoding="utf-8")
        tests = CORE.get(module) or ["tests"]
        if not run_tests(tests, args.timeout):
            print(f"skip {module}: its tests fail before any mutation", flush=True)
            continue
        pool = mutants_of(module, original)
        sample = rng.sample(pool, min(args.per_module, len(pool)))
        module_killed = 0
        for mutant in sample:
            try:
                path.write_text(mutant.apply(original), encoding="utf-8")
                survived = run_tests(tests, args.timeout)
            finally:
                path.write_text(original, encoding="utf-8")
            total += 1
            if survived:
                survivors.append(mutant)
            else:
                killed += 1
                module_killed += 1
        print(f"{module}: {module_killed}/{len(sample)} killed (of {len(pool)} possible mutants)", flush=True)
    rate = killed / total if total else 0.0
    print(f"\nkill rate: {killed}/{total} = {rate:.0%} in {time.monotonic() - started:.0f} s")
    for mutant in survivors:
        print(f"  survived: {mutant}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
