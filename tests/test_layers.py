"""Step-wise layers (memspice.nn.layer): a user's own time loop and topology, solved as the
whole-network solver solves a chain."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from memspice.circuit import RECTIFIER_WIDTH, Network, NeuronLayer, RowBuffer
from memspice.devices import RELAXATION_NEURON
from memspice.errors import ConfigError, NetlistError
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import membrane_node, network_netlist
from memspice.netlist.stimuli import PWL
from memspice.nn import LayerGraph, MemristiveLayer, MemristiveSNN, spike_counts
from memspice.solver import NewtonOptions, SolverOptions, integrators
from memspice.spice.results import Waveforms
from memspice.spice.runner import run_netlist
from memspice.validate.metrics import compare

BATCH, STEPS = 2, 60


def rows(n_in: int, seed: int = 0) -> torch.Tensor:
    """DC-ish row voltages in 0.5–1 V with a little ripple (V, ``(BATCH, STEPS + 1, n_in)``)."""
    generator = torch.Generator().manual_seed(seed)
    return 0.5 + 0.5 * torch.rand(BATCH, STEPS + 1, n_in, dtype=torch.float64, generator=generator)


def run_chain(layers: list[MemristiveLayer], x: torch.Tensor, errors: list | None = None) -> list[torch.Tensor]:
    """Each layer fed the one before; membranes per layer (V, ``(BATCH, STEPS + 1, n)``). Each
    layer's largest local error estimate (:meth:`MemristiveLayer.error`) is appended to ``errors``."""
    states = [layer.init_state(BATCH, torch.float64, rows=[x[:, 0]] if k == 0 else None)
              for k, layer in enumerate(layers)]
    out = [[s.v] for s in states]
    for n in range(x.shape[1] - 1):
        source = x[:, n + 1]
        for k, layer in enumerate(layers):
            v, states[k] = layer.step(source, states[k])
            source = states[k]
            out[k].append(v)
    if errors is not None:
        errors += [layer.error(state) for layer, state in zip(layers, states)]
    return [torch.stack(v, 1) for v in out]


#: Rectifying buffers that let layer 2 of these small networks fire (its rows pass only what
#: lies above 0.2 V of layer 1's membranes).
RECTIFYING = {"buffer_gain": 3.5, "buffer_knee": 0.2, "deep_init_pos": (0.6, 1.0), "deep_init_neg": (0.0, 0.2)}
#: A ReLU of the membranes at a high gain, saturating at a rail: layer 1's spikes reach layer 2 at the rail.
RAILED = {"buffer_gain": 8.0, "buffer_knee": 0.0, "buffer_rail": 1.0, "deep_init_pos": (0.6, 1.0),
          "deep_init_neg": (0.0, 0.2)}


@pytest.mark.parametrize("buffers", [{}, RECTIFYING], ids=["linear", "rectifying"])
def test_a_chain_of_layers_is_the_network_waveforms_and_gradients(buffers, monkeypatch):
    network = MemristiveSNN((6, 5, 3), seed=1, **buffers)
    x = rows(6)
    monkeypatch.setattr(integrators, "MAX_DEFERRED", 7)  # the run's estimates folded in several batches
    solution = network(x)
    reference = solution.v
    assert reference[0].max() > 0.45 and spike_counts(reference[-1]).sum() > 0  # spikes in both layers
    # the network is its layers: they hold its crossbars, whose names every checkpoint keeps
    assert [layer.crossbars[0] for layer in network.layers] == list(network.crossbars)
    assert sorted(network.state_dict()) == [f"crossbars.{k}.theta_{side}" for k in (0, 1) for side in ("neg", "pos")]
    errors = []
    stepped = run_chain(network.layers, x, errors)
    for a, b in zip(stepped, reference):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)
    # the network estimates its steps' errors after the run, all at once; the layers step by step
    assert len(solution.errors) == 2
    for whole, step_by_step in zip(solution.errors, errors):
        assert (whole.step, whole.batch_item, whole.neuron, whole.component) == \
            (step_by_step.step, step_by_step.batch_item, step_by_step.neuron, step_by_step.component)
        assert whole.ratio == pytest.approx(step_by_step.ratio, rel=1e-9) and whole.ratio > 0
    grads = []
    for membranes in (stepped, network(x).v):
        network.zero_grad()
        (membranes[-1] ** 2).mean().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in network.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-12 * b.abs().max())


def test_several_inputs_add_their_currents_at_the_membrane():
    """Inputs of 4 and 3 rows onto one layer equal one 7-row crossbar of both (their column
    currents and loading terms add at each membrane)."""
    two = MemristiveLayer((4, 3), 5, seed=3).double()  # float64 conductances: float32 ones differ by an
    one = MemristiveLayer(7, 5, seed=4).double()        # ulp between tensor shapes (vectorized sigmoid)
    with torch.no_grad():
        for side in ("theta_pos", "theta_neg"):
            getattr(one.crossbars[0], side).copy_(torch.cat([getattr(c, side) for c in two.crossbars]))
    for crossbar in (one.crossbars[0], two.crossbars[1]):
        crossbar.g_min, crossbar.g_max = two.crossbars[0].g_min, two.crossbars[0].g_max
    x = rows(7, seed=5)
    s2, s1 = two.init_state(BATCH, torch.float64, rows=[x[:, 0, :4], x[:, 0, 4:]]), \
        one.init_state(BATCH, torch.float64, rows=[x[:, 0]])
    for n in range(STEPS):
        v2, s2 = two.step([x[:, n + 1, :4], x[:, n + 1, 4:]], s2)
        v1, s1 = one.step(x[:, n + 1], s1)
        assert torch.allclose(v1, v2, rtol=0, atol=1e-12)


def test_a_two_branch_network_with_a_skip_trains():
    """Pixels -> A and B (two branches) -> C, which also reads the pixels: every crossbar gets a
    gradient through the circuit and the loss falls."""
    a, b = MemristiveLayer(6, 4, seed=1), MemristiveLayer(6, 4, seed=2)
    c = MemristiveLayer((4, 4, 6), 2, seed=3)
    x = rows(6)[:, :31]
    target = torch.tensor([0, 1])  # which output should sit higher, per sample
    modules = torch.nn.ModuleList([a, b, c])
    optimizer = torch.optim.Adam(modules.parameters(), lr=0.03)

    def loss() -> torch.Tensor:
        states = [a.init_state(BATCH, torch.float64, rows=[x[:, 0]]),
                  b.init_state(BATCH, torch.float64, rows=[x[:, 0]]),
                  c.init_state(BATCH, torch.float64, rows=[None, None, x[:, 0]])]
        total = 0.0
        for n in range(x.shape[1] - 1):
            _, states[0] = a.step(x[:, n + 1], states[0])
            _, states[1] = b.step(x[:, n + 1], states[1])
            v, states[2] = c.step([states[0], states[1], x[:, n + 1]], states[2])
            total = total + v
        return torch.nn.functional.cross_entropy(20 * total / (x.shape[1] - 1), target)  # mean membranes

    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        assert all(p.grad.abs().max() > 0 for p in modules.parameters())
        optimizer.step()
        for layer in modules:
            layer.project_()
        losses.append(value.item())
    assert min(losses) < 0.85 * losses[0], losses


def test_a_step_newton_cannot_finish_is_redone_in_substeps():
    network = MemristiveSNN((6, 5, 3), seed=1)
    x = rows(6)
    whole = run_chain(network.layers, x)
    layers = network.layers
    for layer in layers:
        layer.solver = layer.solver.replace(newton=NewtonOptions(max_iter=3, max_splits=6))  # too few for a spike
    split = run_chain(layers, x)
    for a, b in zip(whole, split):
        assert torch.equal(spike_counts(a), spike_counts(b))
        assert (a - b).abs().max() < 0.02


def test_layers_refuse_inputs_they_cannot_use():
    first, second = MemristiveLayer(6, 5), MemristiveLayer(5, 3)
    s1, s2 = first.init_state(BATCH), second.init_state(BATCH)
    with pytest.raises(ConfigError, match="step the layers it reads first"):
        second.step(s1, s2)  # the upstream layer has not stepped yet
    with pytest.raises(ConfigError, match=r"must be a \(2, 6\) tensor"):
        first.step(torch.zeros(2, 7), s1)
    with pytest.raises(ConfigError, match="has 1 inputs; got 2"):
        first.step([torch.zeros(2, 6), torch.zeros(2, 6)], s1)
    with pytest.raises(ConfigError, match="unknown method"):
        MemristiveLayer(6, 5, solver=SolverOptions(method="rk4"))


def two_branches_and_a_skip() -> LayerGraph:
    """Inputs -> A, B; C reads A, B and the inputs."""
    return LayerGraph([MemristiveLayer(6, 4, seed=1), MemristiveLayer(6, 4, seed=2),
                       MemristiveLayer((4, 4, 6), 3, seed=3)], [(0,), (0,), (1, 2, 0)])


T_END = 30e-6


def step_inputs() -> tuple[list[PWL], np.ndarray, torch.Tensor]:
    """Six rows stepped to 0.5–1 V within the first µs: the stimuli for ngspice, the grid of
    200 ns steps (s) and the same rows sampled on it for torch (V, ``(1, steps + 1, 6)``)."""
    levels = np.random.default_rng(0).uniform(0.5, 1.0, size=6)
    inputs = [PWL([0, 1e-6, T_END], [0, level, level]) for level in levels]
    t = np.arange(round(T_END / 200e-9) + 1) * 200e-9
    return inputs, t, torch.tensor(np.stack([u.sample(t) for u in inputs], -1)).unsqueeze(0)


def assert_ngspice_agrees(network: Network, inputs: list[PWL], t: np.ndarray, membranes: list[torch.Tensor],
                          min_spikes: int) -> None:
    """Every neuron of ``network`` in ngspice spikes as often as in torch (at least ``min_spikes``
    times), within 1 % of its interval, its waveform within 2 % NRMSE."""
    reference = Waveforms.from_plot(run_netlist(network_netlist(network, inputs, TranSettings(t_end=T_END)))[-1])
    for k, (_, neurons) in enumerate(network.layers, start=1):
        for j in range(neurons.size):
            name = f"v({membrane_node(k, j)})"
            m = compare(reference.time, reference.signals[name], t, membranes[k - 1][0, :, j].numpy())
            assert m["spikes_ref"] == m["spikes_torch"] >= min_spikes, name
            assert m["spike_time_error_over_isi"] <= 0.01 and m["nrmse"] <= 0.02, (name, m)


@pytest.mark.ngspice
def test_a_two_branch_network_with_a_skip_runs_the_same_in_ngspice():
    inputs, t, x = step_inputs()
    graph = two_branches_and_a_skip()
    with torch.no_grad():
        membranes = graph(x)
    network = graph.describe()
    assert network.sources == ((0,), (0,), (1, 2, 0)) and network.layers[2][0].n_in == 14
    assert_ngspice_agrees(network, inputs, t, membranes, min_spikes=5)


@pytest.mark.ngspice
@pytest.mark.parametrize("buffers", [RECTIFYING, RAILED], ids=["rectifying", "railed"])
def test_rectifying_buffers_run_the_same_in_ngspice(buffers):
    """Layer 2 driven by B-sources of RowBuffer.spice in ngspice, by RowBuffer.__call__ in torch."""
    inputs, t, x = step_inputs()
    model = MemristiveSNN((6, 5, 3), seed=1, **buffers).double()
    with torch.no_grad():
        membranes = model(x).v
    network = model.describe()
    netlist = network_netlist(network, inputs, TranSettings(t_end=T_END))
    assert "Bl2_b0p l2_r0p 0 V = " in netlist and "El2_b" not in netlist  # B-sources, not linear E-elements
    assert_ngspice_agrees(network, inputs, t, membranes, min_spikes=3)


def test_row_buffers_pass_what_lies_above_their_knee():
    v = torch.tensor([-0.5, 0.0, 0.1, 0.2, 0.3, 0.5], dtype=torch.float64)
    assert torch.equal(RowBuffer(2.0)(v), 2.0 * v)
    rectified = RowBuffer(4.0, 0.2)(v)
    assert rectified[:2].abs().max() < 4e-6 and rectified[2] == pytest.approx(4 * 0.02 * math.log1p(math.exp(-5)))
    assert rectified[3] == pytest.approx(4 * RECTIFIER_WIDTH * math.log(2))  # the knee
    np.testing.assert_allclose(rectified[4:], 4 * (v[4:] - 0.2), atol=4 * RECTIFIER_WIDTH * math.exp(-5))
    for gain, knee, match in ((0.0, None, "buffer_gain must be"), (11.0, None, "buffer_gain must be"),
                              (2.0, 2.5, "buffer_knee must be"), (2.0, True, "buffer_knee must be")):
        with pytest.raises(NetlistError, match=match):
            RowBuffer(gain, knee)
    with pytest.raises(NetlistError, match="buffer_knee must be"):
        MemristiveSNN((4, 3, 2), buffer_knee=float("nan"))


def test_a_rail_saturates_the_buffers_smoothly_on_both_sides():
    v = torch.tensor([-0.5, -0.01, 0.0, 0.05, 0.1, 0.3, 0.5], dtype=torch.float64, requires_grad=True)
    railed = RowBuffer(8.0, 0.0, None, 1.35)(v)
    free = RowBuffer(8.0, 0.0)(v)
    np.testing.assert_allclose(railed[:5].detach(), free[:5].detach(), atol=1e-12)  # well inside: unchanged
    np.testing.assert_allclose(railed[5:].detach(), 1.35, atol=1e-12)  # beyond: at the rail
    railed.sum().backward()
    railed_grad, v.grad = v.grad, None
    free.sum().backward()
    np.testing.assert_allclose(railed_grad[:5], v.grad[:5], rtol=1e-9)
    assert v.grad[-1] == pytest.approx(8.0) and railed_grad[-1].abs() < 1e-9
    linear = RowBuffer(4.0, rail=1.0)(torch.tensor([-1.0, -0.1, 0.1, 1.0], dtype=torch.float64))
    np.testing.assert_allclose(linear, [-1.0, -0.4, 0.4, 1.0], atol=1e-12)  # and below -rail
    assert RowBuffer(4.0, rail=1.0).settings()["buffer_rail"] == 1.0
    for rail in (0.0, 2.0, True, float("nan")):
        with pytest.raises(NetlistError, match="buffer_rail must be"):
            RowBuffer(4.0, rail=rail)
    with pytest.raises(NetlistError, match="buffer_rail must be"):
        MemristiveSNN((4, 3, 2), buffer_rail=-1.0)


def test_topologies_are_checked_where_they_are_described():
    a, b = MemristiveLayer(6, 4), MemristiveLayer(4, 3)
    with pytest.raises(ConfigError, match=r"layer 2 reads \(2,\)"):
        LayerGraph([a, b], [(0,), (2,)])  # a layer cannot read itself
    with pytest.raises(ConfigError, match=r"its sources \(0,\) give \(6,\)"):
        LayerGraph([a, b], [(0,), (0,)])
    with pytest.raises(ConfigError, match="same dt"):
        LayerGraph([a, MemristiveLayer(4, 3, solver=100e-9)], [(0,), (1,)])
    network = two_branches_and_a_skip().describe()
    with pytest.raises(NetlistError, match="layer 3: the crossbar has 14 rows but layer 1, layer 2 have 8 outputs"):
        Network(network.layers, sources=((0,), (0,), (1, 2)))
    with pytest.raises(NetlistError, match=r"layer 1 reads \(1,\)"):
        Network(network.layers, sources=((1,), (0,), (1, 2, 0)))
    crossbar, neurons = network.layers[2]
    impostor = replace(RELAXATION_NEURON, name="mif")  # another device under the MIF's subcircuit name
    with pytest.raises(NetlistError, match="two different device models are named 'mif'"):
        Network((*network.layers[:2], (crossbar, NeuronLayer(neurons.size, model=impostor))), sources=network.sources)
