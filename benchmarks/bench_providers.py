"""Client CPU per chunk of rxllm's provider path beside the floor and the peers.

Run: ``python benchmarks/bench_providers.py [--quick|--smoke]``. A thin alias for
``python -m benchmarks --only client``: the upstream server, the floor and every client
implementation live in :mod:`benchmarks._upstream` and :mod:`benchmarks._client`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "client", *sys.argv[1:]]))
