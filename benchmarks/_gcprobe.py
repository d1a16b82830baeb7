"""Run a module as ``__main__`` while timing its garbage collections (the proxy's GC share).

    python -m benchmarks._gcprobe STATS_FILE MODULE [ARGS...]

``gc.callbacks`` marks the start and end of every collection; on ``SIGUSR1`` the total so far
(seconds, collections per generation) is written to ``STATS_FILE`` as JSON. The benchmark
reads it before and after a burst: (GC seconds) / (process CPU seconds) is the GC share.
"""

from __future__ import annotations

import gc
import json
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Any

_total = [0.0]
_started = [0.0]
_counts = [0, 0, 0]


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.process_time()
    else:
        _total[0] += time.process_time() - _started[0]
        _counts[info.get("generation", 0)] += 1


def main() -> None:
    stats = Path(sys.argv[1])
    module = sys.argv[2]

    def dump(signum: int, frame: Any) -> None:
        tmp = stats.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seconds": _total[0], "collections": _counts}))
        tmp.replace(stats)

    gc.callbacks.append(_callback)
    signal.signal(signal.SIGUSR1, dump)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
