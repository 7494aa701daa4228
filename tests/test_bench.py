"""memspice bench on a small network: every figure is there, positive and consistent (timings
themselves are not asserted; they belong to the benchmark's report)."""

from __future__ import annotations

import json
import math

import pytest
from conftest import memspice

from memspice.bench import BenchSettings, run_bench
from memspice.bench.lif import LIFNetwork
from memspice.bench.measure import alternated

KEYS = ("neuron_ratio", "network_ratio", "train_samples_per_s", "peak_memory_bytes", "lif_cost_ratio")


@pytest.mark.ngspice
def test_bench_reports_every_figure_for_a_small_network():
    settings = BenchSettings(network=(16, 8, 4), neuron_batches=(1, 32), network_batch=8, network_window=1e-6,
                             train_batch=8, train_window=1e-6, train_iterations=1, repeats=1, fused=False)
    result = run_bench(settings)
    for key in KEYS:
        assert math.isfinite(result[key]) and result[key] > 0, key
    neuron, network, training = result["neuron"], result["network"], result["training"]
    assert result["neuron_ratio"] == neuron["torch"]["32"]["samples_per_s"] / neuron["ngspice"]["samples_per_s"]
    assert result["network_ratio"] == network["torch"]["samples_per_s"] / network["ngspice"]["samples_per_s"]
    # one round: the cost ratio is that round's circuit time over its LIF time
    lif, circuit = training["lif"]["samples_per_s"], training["circuit"]["samples_per_s"]
    assert result["lif_cost_ratio"] == pytest.approx(lif / circuit)
    assert training["circuit"]["steps"] == training["lif"]["steps"] == 5  # the same number of steps
    for side in (training["circuit"], training["lif"], network["torch"], *neuron["torch"].values()):
        assert side["spread"] >= 1.0 and side["warmup_s"] > 0
    iterations = training["circuit"]["newton_iterations_per_step"]
    assert len(iterations) == 2 and all(1 <= n <= 20 for n in iterations)  # per layer, within max_iter
    assert network["inputs"] == "random pixels (seed 0)"
    assert result["machine"]["ngspice"].lower().startswith("ngspice")
    json.dumps(result)  # serializable as --json prints it


def test_alternated_times_the_sides_in_turn_after_one_warm_up_each():
    calls = []
    sides = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = alternated(sides, "cpu", 2, cold=("c",))
    assert calls == ["a", "b", "a", "b", "c", "a", "b", "c"]
    assert [len(times[k]) for k in ("a", "b", "c", "a_warmup", "b_warmup")] == [2, 2, 2, 1, 1]
    assert "c_warmup" not in times


def test_the_lif_baseline_is_snntorch_leaky_with_its_default_surrogate():
    import snntorch
    import torch

    network = LIFNetwork((6, 4, 3))
    assert all(isinstance(n, snntorch.Leaky) for n in network.neurons)
    assert network.neurons[0].spike_grad.__qualname__.startswith("atan")  # snnTorch's default
    inputs = torch.rand(2, 5, 6, requires_grad=True)
    out = network(inputs)
    out.sum().backward()
    assert out.shape == (2, 5, 3) and inputs.grad.abs().sum() > 0  # the surrogate passes gradients


def test_bench_cli_rejects_a_missing_cuda_device():
    done = memspice("bench", "--device", "cuda:7", "--quick")
    assert done.returncode == 2 and "no CUDA device" in done.stderr


def test_bench_without_snntorch_says_how_to_install_it_before_any_work(monkeypatch):
    import sys

    from memspice.errors import MemspiceError

    monkeypatch.setitem(sys.modules, "snntorch", None)  # import snntorch now fails
    progress = []
    with pytest.raises(MemspiceError, match=r"pip install 'memspice\[bench\]'"):
        run_bench(BenchSettings(network=(16, 8, 4)), progress.append)
    assert progress == []  # nothing was measured first
