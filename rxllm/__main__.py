"""``python -m rxllm``: the same command line as the ``rxllm`` script."""

from __future__ import annotations

import sys

from rxllm.cli import main

if __name__ == "__main__":
    sys.exit(main())
