"""rxllm's benchmarks: ``python -m benchmarks`` prints the comparison tables (see ``__main__``).

Modules: :mod:`benchmarks._upstream` (the one local upstream server), :mod:`benchmarks._client`
(client CPU per chunk), :mod:`benchmarks._proxy` (the proxies), :mod:`benchmarks._startup`
(import time, memory per stream). The ``bench_*.py`` scripts are focused micro-benchmarks.
"""
