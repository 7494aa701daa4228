"""Benchmarks: the torch solver against ngspice and against a conventional surrogate-gradient SNN."""

from memspice.bench.measure import BenchSettings, run_bench

__all__ = ["BenchSettings", "run_bench"]
