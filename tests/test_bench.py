"""memspice bench on a small network: every figure is there, positive and consistent (timings
themselves are not asserted; they belong to the benchmark's report)."""

from __future__ import annotations

import json
import math

from conftest import memspice

from memspice.bench import BenchSettings, run_bench

KEYS = ("neuron_ratio", "network_ratio", "train_samples_per_s", "peak_memory_bytes", "lif_cost_ratio")


def test_bench_reports_every_figure_for_a_small_network():
    settings = BenchSettings(network=(16, 8, 4), neuron_batches=(1, 32), network_batch=8, network_window=1e-6,
                             train_batch=8, train_window=1e-6, train_iterations=1, repeats=1, fused=False)
    result = run_bench(settings)
    for key in KEYS:
        assert math.isfinite(result[key]) and result[key] > 0, key
    neuron, network, training = result["neuron"], result["network"], result["training"]
    assert result["neuron_ratio"] == neuron["torch"]["32"]["samples_per_s"] / neuron["ngspice"]["samples_per_s"]
    assert result["network_ratio"] == network["torch"]["samples_per_s"] / network["ngspice"]["samples_per_s"]
    assert result["lif_cost_ratio"] == training["lif"]["samples_per_s"] / training["circuit"]["samples_per_s"]
    assert training["circuit"]["steps"] == training["lif"]["steps"] == 5  # the same number of steps
    assert network["inputs"] == "random pixels (seed 0)"
    assert result["machine"]["ngspice"].lower().startswith("ngspice")
    json.dumps(result)  # serializable as --json prints it


def test_bench_cli_rejects_a_missing_cuda_device():
    done = memspice("bench", "--device", "cuda:7", "--quick")
    assert done.returncode == 2 and "no CUDA device" in done.stderr
