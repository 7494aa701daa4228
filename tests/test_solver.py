"""The torch transient solver: agreement with ngspice, exact gradients, batch independence,
clear failures, CUDA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import memspice

from memspice.errors import SolverError
from memspice.netlist.stimuli import PWL
from memspice.solver import simulate_network, simulate_neurons
from memspice.validate.cases import TorchSettings, mif_current

SHORT_STEP = PWL([0, 1e-6, 1e-6 + 1e-9, 30e-6], [0, 0, 2e-6, 2e-6])  # 2 µA from 1 µs, 30 µs long


@pytest.mark.parametrize("method", ["trap", "bdf2"])
def test_mif_step_matches_ngspice(method):
    dt = 10e-9 if method == "trap" else 5e-9
    result = mif_current(SHORT_STEP, TorchSettings(dt=dt, method=method), case="short-step")
    m = result.probes["v(mem)"]
    assert m["spikes_ref"] == m["spikes_torch"] >= 4
    assert m["spike_time_error_over_isi"] <= 0.01
    assert m["nrmse"] <= 0.05


def tiny_network(g: torch.Tensor, cm: torch.Tensor, u: torch.Tensor, method: str) -> torch.Tensor:
    """2 rows -> 1 MIF neuron for 300 steps of 10 ns; a smooth scalar of the membrane trace."""
    g_pos = torch.stack([g, torch.tensor(0.3e-6, dtype=torch.float64)]).reshape(2, 1)
    g_neg = torch.full((2, 1), 0.02e-6, dtype=torch.float64)
    rows = torch.stack([u, torch.tensor(0.6, dtype=torch.float64)]).reshape(1, 1, 2).expand(1, 301, 2)
    sol = simulate_network([(g_pos, g_neg)], rows, 10e-9, params=[{"cm": cm}], method=method)
    v = sol.v[0][0, :, 0]
    return (torch.sigmoid((v - 0.45) / 0.02)).sum() * 10e-9  # time spent above threshold, soft


@pytest.mark.parametrize("method", ["euler", "trap", "bdf2"])
def test_gradients_match_finite_differences(method):
    """d(loss)/d(conductance, neuron parameter, input) through 300 steps that include a spike."""
    values = {"g": 5e-6, "cm": 4e-12, "u": 0.9}
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    loss = tiny_network(leaves["g"], leaves["cm"], leaves["u"], method)
    loss.backward()
    assert loss.item() > 1e-8  # the neuron spiked inside the window
    for name, value in values.items():
        h = value * 1e-5
        plus = {k: torch.tensor(v + (h if k == name else 0), dtype=torch.float64) for k, v in values.items()}
        minus = {k: torch.tensor(v - (h if k == name else 0), dtype=torch.float64) for k, v in values.items()}
        with torch.no_grad():
            fd = (tiny_network(plus["g"], plus["cm"], plus["u"], method)
                  - tiny_network(minus["g"], minus["cm"], minus["u"], method)) / (2 * h)
        assert leaves[name].grad.item() == pytest.approx(fd.item(), rel=2e-3), name


def test_batch_items_do_not_influence_each_other():
    t = np.arange(1001) * 10e-9
    currents = [PWL([0, 1e-6, 1.001e-6], [0, 0, c]).sample(t) for c in (1e-6, 3e-6, 8e-6)]
    together = simulate_neurons(torch.tensor(np.stack(currents)).unsqueeze(-1), 10e-9, method="trap").v[0]
    for k, current in enumerate(currents):
        alone = simulate_neurons(torch.tensor(current).reshape(1, -1, 1), 10e-9, method="trap").v[0]
        torch.testing.assert_close(together[k], alone[0], atol=1e-9, rtol=0)


def test_nan_input_names_step_layer_and_neuron():
    current = torch.full((2, 20, 3), 1e-6, dtype=torch.float64)
    current[1, 7, 2] = float("nan")
    with pytest.raises(SolverError, match=r"neuron 2 \(batch item 1\).*step 7 .*layer 1"):
        simulate_neurons(current, 10e-9, method="euler")


def test_newton_failure_is_reported():
    current = torch.full((1, 4, 1), 2e-6, dtype=torch.float64)
    from memspice.solver.integrators import NewtonOptions

    with pytest.raises(SolverError, match="Newton did not converge in 1 iterations at step 1"):
        simulate_neurons(current, 1e-6, method="trap", newton=NewtonOptions(max_iter=1, vtol=1e-15, xtol=1e-15))


def test_checkpointing_gives_the_same_gradient():
    g = torch.tensor(5e-6, dtype=torch.float64, requires_grad=True)
    rows = torch.full((1, 201, 1), 0.9, dtype=torch.float64)

    def grad(every):
        sol = simulate_network([(g.reshape(1, 1), torch.full((1, 1), 0.02e-6, dtype=torch.float64))], rows, 10e-9,
                               method="trap", checkpoint_every=every)
        (gradient,) = torch.autograd.grad(sol.v[0].square().sum(), g)
        return gradient

    torch.testing.assert_close(grad(None), grad(50), rtol=1e-10, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_cpu():
    t = np.arange(501) * 10e-9
    current = torch.tensor(PWL([0, 1e-6, 1.001e-6], [0, 0, 3e-6]).sample(t)).reshape(1, -1, 1)
    cpu = simulate_neurons(current, 10e-9, method="trap").v[0]
    gpu = simulate_neurons(current.cuda(), 10e-9, method="trap").v[0].cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-9, rtol=0)


def test_validate_cli_with_a_stimulus_file(tmp_path):
    csv = tmp_path / "i.csv"
    csv.write_text("t_s,i_A\n0,0\n1e-6,0\n1.001e-6,3e-6\n8e-6,3e-6\n")
    out, png = tmp_path / "v.npz", tmp_path / "v.png"
    result = memspice("validate", "--stimulus", str(csv), "--dt", "10e-9", "--json", "--save", str(out),
                      "--plot", str(png))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    m = report["probes"]["v(mem)"]
    assert m["spikes_ref"] == m["spikes_torch"] >= 1 and m["nrmse"] < 0.05
    assert report["ngspice"]["reltol"] == 1e-6 and report["torch"]["dt"] == 10e-9
    data = np.load(out)
    assert data["t"].shape == data["v_ref"].shape == data["v_torch"].shape == (801,)
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,1\n")
    result = memspice("validate", "--stimulus", str(bad))
    assert result.returncode == 2 and "two columns t_s,i_A" in result.stderr
