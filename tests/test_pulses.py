"""Pulse extenders (memspice.circuit.PulseExtender): the same linear filter of each spike's charge
in both engines, integrated at the neurons' own Radau IIA stages in torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_layers import T_END, assert_ngspice_agrees, step_inputs
from test_training import TINY

from memspice.circuit import PulseExtender, RowBuffer
from memspice.data import load_dataset
from memspice.deploy.verify import verify
from memspice.errors import ConfigError, NetlistError
from memspice.hardware import HardwareSpec
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import network_netlist, pulse_node
from memspice.nn import MemristiveSNN, spike_counts
from memspice.solver import SolverOptions
from memspice.solver.methods import method_class
from memspice.solver.pulses import extend_pulses
from memspice.spice.results import Waveforms
from memspice.spice.runner import run_netlist
from memspice.train.config import TrainConfig, recipe
from memspice.train.loop import load_trained, train

RADAU5 = method_class("radau5")
FUSED = SolverOptions(fused=True)
#: Layer 2 of the small test network fires from its rows: buffers of layer 1's membranes at half
#: the usual gain plus a pulse extender per neuron.
PULSED = {"buffer_gain": 1.0, "buffer_knee": 0.0, "pulse_gain": 60.0, "deep_init_pos": (0.6, 1.0),
          "deep_init_neg": (0.0, 0.2)}
#: The same behind high-gain buffers with a rail: the extenders' charge passes above the rail.
RAILED_PULSED = {**PULSED, "buffer_gain": 8.0, "buffer_rail": 1.0, "pulse_gain": 30.0}


def test_a_constant_charge_fills_the_extender_exponentially():
    """``tau·dQ/dt = c - Q`` from rest: ``Q = c·(1 - exp(-t/tau))`` at every stage and grid time,
    to the 5th-order accuracy of Radau IIA (dt = tau/10)."""
    dt, tau, steps = 200e-9, 2e-6, 40
    nodes = torch.tensor(RADAU5().nodes(), dtype=torch.float64)[-3:]
    charges = torch.full((steps, 3, 2), 0.7, dtype=torch.float64)
    stages, grid = extend_pulses(charges, dt, tau, RADAU5.tableau.matrix)
    t_stages = (torch.arange(steps, dtype=torch.float64)[:, None] + nodes[None, :]) * dt
    exact = 0.7 * (1 - torch.exp(-t_stages / tau))
    assert torch.allclose(stages[..., 0], exact, rtol=0, atol=1e-7)
    t_grid = torch.arange(steps + 1, dtype=torch.float64) * dt
    assert torch.allclose(grid[:, 1], 0.7 * (1 - torch.exp(-t_grid / tau)), rtol=0, atol=1e-7)
    assert grid[0].abs().max() == 0  # from rest
    assert torch.allclose(grid[1:], stages[:, -1], rtol=0, atol=1e-15)  # each step ends at its last stage


def test_the_extender_is_the_step_by_step_recurrence_and_has_its_gradient():
    """The unrolled product equals stepping the collocation equations one step at a time, and
    autograd's gradient is the finite differences'."""
    dt, tau, matrix = 200e-9, 1e-6, RADAU5.tableau.matrix
    charges = torch.rand(12, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    stages, _ = extend_pulses(charges, dt, tau, matrix)
    a = torch.tensor(matrix, dtype=torch.float64)
    q = torch.zeros(2, dtype=torch.float64)
    for n in range(12):  # (I + h/tau·A)·Q = q·1 + h/tau·A·c, one step at a time
        rhs = q[None, :] + dt / tau * a @ charges[n]
        step = torch.linalg.solve(torch.eye(3, dtype=torch.float64) + dt / tau * a, rhs)
        assert torch.allclose(stages[n], step, rtol=0, atol=1e-12)
        q = step[-1]
    charges.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: extend_pulses(c, dt, tau, matrix), (charges,))


@pytest.mark.ngspice
@pytest.mark.parametrize("buffers", [PULSED, RAILED_PULSED], ids=["linear", "railed"])
def test_pulse_extenders_run_the_same_in_ngspice(buffers):
    """Layer 1's extenders (B-source, R and C in ngspice) and layer 2 driven by membranes plus
    extenders: the same spikes in both engines, the extenders' voltages within 2 % of their range;
    without hidden spikes the extenders stay near 0 V."""
    inputs, t, x = step_inputs()
    model = MemristiveSNN((6, 5, 3), seed=1, solver=FUSED, **buffers)  # float32: the kernels training compiles
    with torch.no_grad():
        solution = model(x.float())
        silenced = model(x.float(), neuron_overrides=model.hidden_spike_ablation())
    assert spike_counts(solution.v[0]).min() >= 5 and solution.pulses[0].shape == solution.v[0].shape
    assert silenced.pulses[0].abs().max() < 0.01 < 0.2 < solution.pulses[0].max()
    network = model.describe()
    netlist = network_netlist(network, inputs, TranSettings(t_end=T_END))
    assert "Bl1_pulse0 0 l1_q0 I = " in netlist and "Bl2_pulse0" not in netlist  # the last layer drives no rows
    reference = Waveforms.from_plot(run_netlist(netlist)[-1])
    q = solution.pulses[0][0].numpy()
    for j in range(5):
        spice_q = np.interp(t, reference.time, reference.signals[f"v({pulse_node(1, j)})"])
        assert np.abs(spice_q - q[:, j]).max() <= 0.02 * q[:, j].max(), j
    assert_ngspice_agrees(network, inputs, t, solution.v, min_spikes=3)


def test_pulse_extenders_add_their_charge_to_the_rows():
    buffer = RowBuffer(1.0, 0.0, PulseExtender(60.0))
    v, q = torch.tensor([0.3, 0.5]), torch.tensor([0.0, 0.4])
    assert torch.allclose(buffer.rows(v, q), buffer(v) + q)
    assert buffer.spice("l1_m0", "l1_q0").startswith("V(l1_q0) + ")
    spike = PulseExtender(60.0).charge(torch.tensor([0.0, 0.45, 0.55]))
    assert spike[0] < 1e-8 and spike[1] == pytest.approx(60 * 0.02 * math.log(2)) and spike[2] > 60 * 0.099
    with pytest.raises(ConfigError, match="needed exactly when"):
        buffer.rows(v, None)


def test_a_spikes_charge_passes_above_the_rail():
    """Behind a railed buffer the extender's charge adds to the saturated share: a spike still
    counts where its membrane's share sits at the rail."""
    buffer = RowBuffer(8.0, 0.0, PulseExtender(30.0), rail=1.0)
    rows = buffer.rows(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 0.3]))
    assert rows[0] == pytest.approx(1.0, abs=0.015)  # 8 x 0.5 V at the rail
    assert rows[1] - rows[0] == pytest.approx(0.3, abs=1e-6)  # the charge on top, not saturated again
    assert buffer.spice("l1_m0", "l1_q0").startswith("V(l1_q0) + ")  # ngspice's: the same sum


@pytest.mark.parametrize("settings, match", [
    ({"gain": 0.0}, "pulse_gain must be a number in"), ({"gain": True}, "pulse_gain must be"),
    ({"gain": 60.0, "tau": -1e-6}, "pulse_tau must be a time in"), ({"gain": 60.0, "knee": 3.0}, "pulse_knee must")])
def test_bad_pulse_extenders_are_refused(settings, match):
    with pytest.raises(NetlistError, match=match):
        PulseExtender(**settings)


def test_pulse_extenders_need_a_whole_layer_run():
    x = torch.rand(1, 11, 6, dtype=torch.float64)
    with pytest.raises(ConfigError, match="pulse extenders are integrated at the stages of a whole layer's run"):
        MemristiveSNN((6, 5, 3), **PULSED).double()(x)  # the reference (not fused) solver steps one step at a time
    model = MemristiveSNN((6, 5, 3), solver=FUSED, **PULSED)
    wired = HardwareSpec(wire_resistance=10.0).sample(model.sizes, seed=0)
    with pytest.raises(ConfigError, match="and ideal wires"):  # coupled columns are stepped one step at a time
        model(x.float(), chip=wired)
    first, second = model.layers
    s1, s2 = first.init_state(1), second.init_state(1)
    _, s1 = first.step(torch.zeros(1, 6), s1)
    with pytest.raises(ConfigError, match="does not integrate pulse extenders"):
        second.step(s1, s2)
    with pytest.raises(ConfigError, match=r"pulse_gain must be a number in \(0, 1000\] V/V; got -1.0"):
        TrainConfig(pulse_gain=-1.0)


@pytest.mark.ngspice
def test_a_network_with_pulse_extenders_trains_saves_and_verifies(tmp_path):
    """``memspice train --pulse-gain``'s network keeps its extenders in the checkpoint, and
    ``verify`` runs it in both engines (its torch side needs the fused run: float64, compiled)."""
    digits = load_dataset("digits")
    config = recipe("digits", **{**TINY, "fused": True, "epochs": 1}, buffer_gain=1.0, buffer_knee=0.0,
                    pulse_gain=60.0, pulse_tau=1e-6)
    train(config, tmp_path, progress=False, dataset=digits)
    trained = load_trained(tmp_path / "checkpoint.pt")
    assert trained.model.buffer.pulse == PulseExtender(60.0, 1e-6)
    assert trained.model.describe().buffer.pulse == PulseExtender(60.0, 1e-6)
    report = verify(trained, digits.test_x, digits.test_y, np.arange(2), progress=False)
    assert report["agreement"] == 1.0 and report["count_match"] == 1.0
    assert sum(sum(row["counts_spice"]) for row in report["per_sample"]) > 0
