"""Benchmarks (not tests): run from the repository root as `python -m bench.run` / `python -m bench.milter_direct`."""
