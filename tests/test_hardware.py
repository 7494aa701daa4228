"""Chips (memspice.hardware): each non-ideality alone, the same chip in torch and in ngspice."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from memspice.deploy.export import input_waveforms
from memspice.errors import ConfigError
from memspice.hardware import PRESETS, HardwareSpec, load_spec
from memspice.hardware.chip import SWITCH_TRIMS
from memspice.hardware.wires import side_ports
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import membrane_node, network_netlist
from memspice.nn import MemristiveSNN
from memspice.signals import spike_times
from memspice.spice.results import Waveforms
from memspice.spice.runner import run_netlist

SIZES = (4, 3, 2)
DT, N_STEPS = 50e-9, 400  # 20 µs: several spikes per neuron

#: Each effect alone, strong enough to change every layer.
EFFECTS = {
    "levels": HardwareSpec(levels=3),
    "program_noise": HardwareSpec(program_noise=0.1, program_noise_relative=0.05),
    "range_spread": HardwareSpec(range_spread=0.3),
    "stuck": HardwareSpec(stuck_off=0.3, stuck_on=0.1),
    "stuck_compensated": HardwareSpec(stuck_off=0.3, stuck_on=0.1, compensate_stuck=True),
    "neuron_spread": HardwareSpec(neuron_spread=0.1),
    "threshold_spread": HardwareSpec(threshold_spread=0.05),
    "wires": HardwareSpec(wire_resistance=3000.0, tile_size=2),
    "read_noise": HardwareSpec(read_noise=0.3),
    "trims": HardwareSpec(neuron_spread=0.1, threshold_spread=0.1, trim_bits=3),
    "calibrated": HardwareSpec(neuron_spread=0.1, threshold_spread=0.1, trim_bits=3),
    "switch_trims": HardwareSpec(neuron_spread=0.1, threshold_spread=0.1, trim_bits=3, trim_scheme="switch"),
    "switch_calibrated": HardwareSpec(neuron_spread=0.1, threshold_spread=0.1, trim_bits=3, trim_scheme="switch"),
}
#: Codes that calibration in the loop could have set (DAC steps of 3 bits: ±3 per sign, ±6 added).
CALIBRATIONS = {"calibrated": [[2, -3, 6], [-2, 1]], "switch_calibrated": [[2, -3, 6], [-2, 1]]}


def small_network() -> tuple[MemristiveSNN, torch.Tensor]:
    model = MemristiveSNN(SIZES, solver=DT, seed=3, init_pos=(0.5, 1.0), init_neg=(0.0, 0.3),
                          deep_init_pos=(0.5, 1.0), deep_init_neg=(0.0, 0.3)).double()
    t = torch.arange(N_STEPS + 1, dtype=torch.float64) * DT
    rows = torch.stack([0.9 * torch.ones_like(t), 0.6 + 0.3 * torch.sin(t / 3e-6), 0.8 * (t > 5e-6),
                        0.4 * torch.ones_like(t)], dim=-1)
    return model, rows.unsqueeze(0)


@pytest.fixture(scope="module")
def ideal_membranes() -> list[torch.Tensor]:
    """The membranes of :func:`small_network` on no chip, solved once for the module (400 steps
    of a batch of one take seconds, most of it per-step overhead)."""
    model, rows = small_network()
    with torch.no_grad():
        return model(rows).v


@pytest.mark.parametrize("bad, message", [
    ({"program_noise": -0.1}, "program_noise must be a finite number >= 0"),
    ({"stuck_off": 0.7, "stuck_on": 0.5}, "at most 1 together"),
    ({"stuck_on": 1.5}, "at most 1 together"),
    ({"levels": 1}, "levels must be an integer >= 2"),
    ({"levels": 2.5}, "levels must be an integer >= 2"),
    ({"neuron_spread": 0.5}, "at most 0.3"),
    ({"threshold_spread": -0.01}, "threshold_spread must be a finite number >= 0"),
    ({"range_spread": float("nan")}, "finite number"),
    ({"wire_resistance": -1.0}, "wire_resistance must be a finite number >= 0"),
    ({"tile_size": 0}, "tile_size must be a positive integer"),
    ({"read_noise": -0.01}, "read_noise must be a finite number >= 0"),
    ({"trim_bits": 1}, r"trim_bits must be an integer in \[2, 16\]"),
    ({"trim_bits": 6.0}, "trim_bits must be an integer"),
    ({"trim_bits": True}, "trim_bits must be an integer"),
    ({"compensate_stuck": 1}, "compensate_stuck must be true or false; got 1"),
    ({"trim_scheme": "comparator"}, "trim_scheme must be one of 'membrane', 'switch'; got 'comparator'"),
])
def test_bad_chip_descriptions_give_one_clear_error(bad, message):
    with pytest.raises(ConfigError, match=message):
        HardwareSpec(**bad)


def test_chip_files_and_presets_load_and_unknown_settings_are_named(tmp_path):
    spec = HardwareSpec(name="mine", levels=8, stuck_off=0.01)
    path = tmp_path / "chip.json"
    path.write_text(json.dumps(spec.to_dict()))
    assert load_spec(str(path)) == spec
    assert load_spec("stress") is PRESETS["stress"]
    path.write_text(json.dumps({"levles": 8}))
    with pytest.raises(ConfigError, match="unknown hardware settings 'levles'"):
        load_spec(str(path))
    with pytest.raises(ConfigError, match="neither a preset"):
        load_spec("no-such-chip")


def test_wires_in_series_with_one_cell_and_the_ideal_limit():
    """One cell between two wire segments is three resistors in series; tiny segments leave the
    ideal crossbar (P = G, Q the diagonal of column sums), and tiles split a layer exactly."""
    g, r = np.array([[2e-6]]), 1e4
    transfer, load = side_ports(g, r, None)
    np.testing.assert_allclose([transfer[0, 0], load[0, 0]], 1 / (1 / g[0, 0] + 2 * r), rtol=1e-12)
    cells = np.random.default_rng(0).uniform(1e-7, 1e-6, (6, 5))
    transfer, load = side_ports(cells, 1e-6, 4)
    np.testing.assert_allclose(transfer, cells, rtol=1e-9)
    np.testing.assert_allclose(load, np.diag(cells.sum(0)), rtol=1e-9, atol=1e-15)
    whole, _ = side_ports(cells, 100.0, None)
    tiled, tiled_load = side_ports(cells, 100.0, 3)
    assert np.abs(whole - tiled).max() > 1e-6 * cells.max()  # shorter wires, another circuit
    np.testing.assert_array_equal(tiled_load[:3, 3:], 0.0)  # column tiles meet only at their own neurons
    np.testing.assert_allclose(tiled[:3, :3], side_ports(cells[:3, :3], 100.0, None)[0], rtol=1e-12)


def test_read_noise_belongs_to_the_sample_not_to_its_batch():
    model, rows = small_network()
    chip = HardwareSpec(read_noise=0.3).sample(SIZES, 2)
    with torch.no_grad():
        alone = model(rows, chip=chip, samples=torch.tensor([7]))
        batch = model(torch.cat([rows, rows]), chip=chip, samples=torch.tensor([3, 7]))
    torch.testing.assert_close(alone.v[-1][0], batch.v[-1][1], rtol=0, atol=1e-9)  # batching rounds alike
    assert (batch.v[-1][0] - batch.v[-1][1]).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="needs the dataset index of every sample"):
        model(rows, chip=chip)


def test_the_chip_seed_reproduces_the_chip_exactly():
    model, _ = small_network()
    spec = PRESETS["stress"]
    a, b, c = (model.describe(chip=spec.sample(SIZES, seed)) for seed in (7, 7, 8))
    for (xa, na), (xb, nb), (xc, _) in zip(a.layers, b.layers, c.layers):
        assert np.array_equal(xa.g_pos, xb.g_pos) and np.array_equal(xa.g_neg, xb.g_neg)
        assert all(np.array_equal(na.per_neuron[k], nb.per_neuron[k]) for k in na.per_neuron)
        assert not np.array_equal(xa.g_pos, xc.g_pos)


def test_the_ideal_chip_is_the_trained_network(ideal_membranes):
    model, rows = small_network()
    chip = PRESETS["ideal"].sample(SIZES, 0)
    with torch.no_grad():
        on_chip = model(rows, chip=chip)
    for a, b in zip(ideal_membranes, on_chip.v):
        assert torch.equal(a, b)


def _first_spike_errors(solution, reference) -> np.ndarray:
    """|first spike time of ``solution`` - ``reference``'s| (s) of each neuron of layer 1."""
    t = reference.t.numpy()
    firsts = [[spike_times(t, s.v[0][0, :, j].numpy())[0] for j in range(SIZES[1])] for s in (solution, reference)]
    return np.abs(np.subtract(*firsts))


def test_trims_calibrate_each_neuron_to_within_its_dacs_step(ideal_membranes):
    """A trimmed chip's capacitances lie within half a capacitor-bank step of nominal; its trim
    currents hold each membrane at rest its threshold's offset higher, to within half a DAC step;
    and the neurons' first spikes move several times less from the ideal network's than untrimmed."""
    model, rows = small_network()
    bits, spread = 8, 0.1
    trimmed = HardwareSpec(neuron_spread=spread, threshold_spread=spread, trim_bits=bits).sample(SIZES, 1)
    untrimmed = HardwareSpec(neuron_spread=spread, threshold_spread=spread).sample(SIZES, 1)
    params = model.layers[0].device_params()
    like = torch.zeros((), dtype=torch.float64)
    bank_step = (1 / (1 - 3 * spread) - 1 / (1 + 3 * spread)) / (2**bits - 1)
    cm = [chip.neuron_params(0, params, like)["cm"].numpy() / params["cm"] for chip in (trimmed, untrimmed)]
    assert np.abs(cm[0] - 1).max() <= (1 + 3 * spread) * bank_step / 2  # a step of 1/f, times f
    assert np.abs(cm[1] - 1).max() > 10 * bank_step
    load = torch.full((SIZES[1],), 5e-6, dtype=torch.float64)
    current, rest = trimmed.trims(0, params, load)
    total = load + params["gl"] + params["goff1"] + params["goff2"]
    offset = params["th1"] * (torch.as_tensor(trimmed.neuron_factors[0]["th1"]) - 1)
    lsb = current.abs().max() / (2 ** (bits - 1) - 1)
    assert (rest - offset).abs().max() <= lsb / total.min() / 2 * (1 + 1e-9)
    torch.testing.assert_close(rest * total, current, rtol=1e-12, atol=0)
    assert untrimmed.trims(0, params, load) is None
    only_thresholds = [HardwareSpec(threshold_spread=spread, trim_bits=b).sample(SIZES, 1) for b in (None, bits)]
    with torch.no_grad():
        ideal = model(rows)
        errors = [_first_spike_errors(model(rows, chip=chip), ideal) for chip in only_thresholds]
    assert errors[0].sum() > 100e-9  # the thresholds' spread moves the spikes
    assert errors[1].sum() < 0.5 * errors[0].sum()


def test_switch_trims_put_each_switch_back_on_its_nominal_voltages(ideal_membranes):
    """A chip that trims its switches shifts each switch's source by its threshold's offset, to
    within half a DAC step, so that both switches turn on at the nominal membrane voltages; it
    injects no current and its membranes rest at 0 V; calibration codes move the depolarizing
    switch's source by whole steps; its on-conductances and capacitances are within half a bank
    step of nominal; and the first spikes move several times less from the ideal
    network's than untrimmed, and less than with the membrane-current trim."""
    model, rows = small_network()
    bits, spread = 8, 0.1
    spec = HardwareSpec(threshold_spread=spread, trim_bits=bits, trim_scheme="switch")
    chip = spec.sample(SIZES, 1)
    params = model.layers[0].device_params()
    like = torch.zeros((), dtype=torch.float64)
    trimmed = chip.neuron_params(0, params, like)
    assert chip.trims(0, params, torch.full((SIZES[1],), 5e-6, dtype=torch.float64)) is None
    for group, (threshold, hold, source) in SWITCH_TRIMS.items():
        factor = torch.as_tensor(chip.neuron_factors[0][group])
        offset = params[threshold] * (factor - 1)
        shift = params[source] - trimmed[source]
        lsb = offset.abs().max() / (2 ** (bits - 1) - 1)
        assert (shift - offset).abs().max() <= lsb / 2 * (1 + 1e-9)
        assert (trimmed[threshold] - params[threshold]).abs().max() <= lsb / 2 * (1 + 1e-9)
        torch.testing.assert_close(trimmed[hold], params[hold] * factor - shift, rtol=0, atol=1e-15)
    codes = [[1, -2, 0], [0, 0]]
    chip.set_calibration(codes)
    moved = chip.neuron_params(0, params, like)
    lsb = (params["th1"] * (torch.as_tensor(chip.neuron_factors[0]["th1"]) - 1)).abs().max() / (2 ** (bits - 1) - 1)
    torch.testing.assert_close(trimmed["e1"] - moved["e1"], torch.tensor(codes[0], dtype=torch.float64) * lsb,
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(moved["e2"], trimmed["e2"], rtol=0, atol=0)
    varied = dataclasses.replace(spec, neuron_spread=spread).sample(SIZES, 1)  # on-conductances: a bank each
    bank_step = (1 / (1 - 3 * spread) - 1 / (1 + 3 * spread)) / (2**bits - 1)
    for name in ("gon1", "gon2", "cm"):
        factor = varied.neuron_params(0, params, like)[name].numpy() / params[name]
        assert np.abs(factor - 1).max() <= (1 + 3 * spread) * bank_step / 2
        assert np.abs(varied.neuron_factors[0][name] - 1).max() > 10 * bank_step
    chips = [dataclasses.replace(spec, trim_bits=None).sample(SIZES, 1),
             dataclasses.replace(spec, trim_scheme="membrane").sample(SIZES, 1), spec.sample(SIZES, 1)]
    with torch.no_grad():
        ideal = model(rows)
        first = [model(rows, chip=c) for c in chips]
        errors = [_first_spike_errors(solution, ideal) for solution in first]
    assert first[2].v[0][0, 0].abs().max() == 0  # from rest at 0 V
    assert errors[0].sum() > 100e-9  # the thresholds' spread moves the spikes
    assert errors[2].sum() < 0.25 * errors[0].sum() and errors[2].sum() < errors[1].sum()


def test_calibration_codes_move_the_trims_and_travel_with_the_chip():
    """Calibration codes add whole DAC steps to the threshold trims, the chip's description
    carries them and rebuilds the same chip, and codes a DAC cannot hold are one clear error."""
    model, _ = small_network()
    params = model.layers[0].device_params()
    load = torch.tensor([20e-6, 30e-6, 40e-6], dtype=torch.float64)
    chip = EFFECTS["calibrated"].sample(SIZES, 0)
    assert not chip.calibrated and "calibration" not in chip.describe()
    before, _ = chip.trims(0, params, load)
    chip.set_calibration(CALIBRATIONS["calibrated"])
    after, rest = chip.trims(0, params, load)
    lsb = before.abs().max() / 3  # the largest factory trim spans the DAC
    factory = (before / lsb).numpy()
    np.testing.assert_allclose(factory, np.round(factory), atol=1e-9)
    np.testing.assert_allclose((after / lsb).numpy(), np.clip(factory + [2, -3, 6], -3, 3), atol=1e-9)
    assert not torch.equal(after, before)  # whole steps added, within the DAC's ±3 codes
    rebuilt = type(chip).from_description(json.loads(json.dumps(chip.describe())))
    assert rebuilt.calibrated and rebuilt.describe() == chip.describe()
    assert torch.equal(rebuilt.trims(0, params, load)[1], rest)
    for codes, message in (([[1, 2], [0, 0]], r"layer 1 has 3 neurons"), ([[0, 0, 0]], "one list of codes per layer"),
                           ([[0.5, 0, 0], [0, 0]], "integers within ±6"), ([[7, 0, 0], [0, 0]], "integers within ±6")):
        with pytest.raises(ConfigError, match=message):
            chip.set_calibration(codes)
    with pytest.raises(ConfigError, match="no threshold trims to calibrate"):
        HardwareSpec(neuron_spread=0.1, threshold_spread=0.1).sample(SIZES, 0).set_calibration([[0, 0, 0], [0, 0]])


def test_levels_round_each_cell_to_a_state_and_pass_the_gradient_through():
    model, _ = small_network()
    crossbar = model.crossbars[0]
    chip = HardwareSpec(levels=5).sample(SIZES, 0)
    g, _ = chip.program(0, crossbar.g_pos, crossbar.g_neg, (crossbar.g_min, crossbar.g_max))
    fractions = ((g - crossbar.g_min) / (crossbar.g_max - crossbar.g_min)).detach().numpy()
    np.testing.assert_allclose(fractions * 4, np.round(fractions * 4), atol=1e-9)
    g.sum().backward()
    assert crossbar.theta_pos.grad is not None and crossbar.theta_pos.grad.abs().min() > 0


def test_stuck_cells_sit_at_their_bounds_and_learn_nothing():
    model, _ = small_network()
    crossbar = model.crossbars[0]
    chip = HardwareSpec(stuck_off=0.3, stuck_on=0.3).sample(SIZES, 1)
    g, _ = chip.program(0, crossbar.g_pos, crossbar.g_neg, (crossbar.g_min, crossbar.g_max))
    stuck = chip.cells[0][0].stuck
    assert (stuck == 1).any() and (stuck == 2).any() and (stuck == 0).any()
    assert np.allclose(g.detach().numpy()[stuck == 1], crossbar.g_min)
    assert np.allclose(g.detach().numpy()[stuck == 2], crossbar.g_max)
    g.sum().backward()
    assert (crossbar.theta_pos.grad.numpy()[stuck != 0] == 0).all()


def test_compensation_keeps_the_difference_of_pairs_with_one_stuck_cell():
    """With compensate_stuck, a stuck cell's partner holds the stuck conductance plus or minus
    the trained difference (within the range), free pairs and pairs stuck on both sides are
    programmed as without it, and the partner's gradient reaches both trained conductances."""
    model = MemristiveSNN((40, 30, 2), solver=DT, seed=3).double()
    crossbar = model.crossbars[0]
    g_range = (crossbar.g_min, crossbar.g_max)
    spec = HardwareSpec(stuck_off=0.2, stuck_on=0.2)
    plain = [g.detach() for g in spec.sample(model.sizes, 4).program(0, crossbar.g_pos, crossbar.g_neg, g_range)]
    chip = dataclasses.replace(spec, compensate_stuck=True).sample(model.sizes, 4)
    g_pos, g_neg = chip.program(0, crossbar.g_pos, crossbar.g_neg, g_range)
    stuck_pos, stuck_neg = (torch.as_tensor(side.stuck) for side in chip.cells[0])
    trained = (crossbar.g_pos - crossbar.g_neg).detach()
    for compensated, partner_stuck, mine_stuck in ((g_neg, stuck_pos, stuck_neg), (g_pos, stuck_neg, stuck_pos)):
        alone = (partner_stuck != 0) & (mine_stuck == 0)
        assert int(alone.sum()) > 20
        difference = (g_pos - g_neg).detach()
        inside = alone & (compensated.detach() > crossbar.g_min) & (compensated.detach() < crossbar.g_max)
        assert int(inside.sum()) > 10  # most partners reach their target
        torch.testing.assert_close(difference[inside], trained[inside], rtol=1e-12, atol=0)
        gap = (difference - trained).abs()
        assert bool((gap[alone] <= (plain[0] - plain[1] - trained).abs()[alone] + 1e-18).all())
    untouched = ((stuck_pos == 0) & (stuck_neg == 0)) | ((stuck_pos != 0) & (stuck_neg != 0))
    for g, reference in zip((g_pos, g_neg), plain):
        assert torch.equal(g.detach()[untouched], reference[untouched])
    (g_neg * ((stuck_pos != 0) & (stuck_neg == 0))).sum().backward()
    assert crossbar.theta_pos.grad.abs().sum() > 0 and crossbar.theta_neg.grad.abs().sum() > 0


@pytest.mark.parametrize("effect", list(EFFECTS))
@pytest.mark.ngspice
def test_each_effect_is_the_same_chip_in_torch_and_ngspice(effect, ideal_membranes):
    """The netlist of a chip holds the conductances (and wires) the solver uses: column currents
    measured in ngspice equal the crossbar's equation, or its wires' multiport, to 1e-6; and the
    same neurons: every spike of every neuron within 20 ns of where torch puts it (dt = 50 ns)."""
    model, rows = small_network()
    chip = EFFECTS[effect].sample(SIZES, 0)
    if effect in CALIBRATIONS:
        chip.set_calibration(CALIBRATIONS[effect])
    network = model.describe(chip=chip)
    sample = 7  # the dataset index that seeds the read noise
    with torch.no_grad():
        solution = model(rows, chip=chip, samples=torch.tensor([sample]))
    assert all(not torch.equal(a, b) for a, b in zip(solution.v, ideal_membranes))  # the effect reaches every layer
    noise = [chip.read_noise(k, crossbar.g_pos, crossbar.g_neg, [sample], N_STEPS + 1)
             for k, (crossbar, _) in enumerate(network.layers)]
    currents = None if noise[0] is None else [input_waveforms(n[0], DT) for n in noise]
    text = network_netlist(network, input_waveforms(rows[0].numpy(), DT),
                           TranSettings(t_end=N_STEPS * DT, max_step=5e-9), sense=True, currents=currents)
    waves = Waveforms.from_plot(run_netlist(text)[-1])
    s = waves.signals
    for k, (crossbar, neurons) in enumerate(network.layers, start=1):
        rows_k = [f"in{i}p" for i in range(crossbar.n_in)] if k == 1 else [f"l{k}_r{i}p" for i in range(crossbar.n_in)]
        u = np.stack([s[f"v({r})"] for r in rows_k], axis=-1)
        v = np.stack([s[f"v({membrane_node(k, j)})"] for j in range(neurons.size)], axis=-1)
        measured = np.stack([s[f"i(vl{k}_sense{j})"] for j in range(neurons.size)], axis=-1)
        expected = crossbar.column_currents(u, v)
        if network.wire_resistance:
            assert np.abs(measured - expected).max() > 1e-3 * np.abs(expected).max()  # the wires matter
            (p_pos, q_pos), (p_neg, q_neg) = (side_ports(g, network.wire_resistance, network.tile_size)
                                              for g in (crossbar.g_pos, crossbar.g_neg))
            expected = u @ (p_pos - p_neg) - v @ (q_pos + q_neg).T
        np.testing.assert_allclose(measured, expected, rtol=1e-6, atol=1e-12)
        if neurons.rest is not None:  # a trimmed chip's membranes start where their trims hold them
            assert np.abs(neurons.rest).max() > 1e-3
            np.testing.assert_allclose(v[0], neurons.rest, rtol=0, atol=1e-4)  # ngspice's first point: uic + .ic
            np.testing.assert_allclose(solution.v[k - 1][0, 0].numpy(), neurons.rest, rtol=0, atol=1e-12)
        spikes = 0
        for j in range(neurons.size):
            in_spice = spike_times(waves.time, s[f"v({membrane_node(k, j)})"])
            in_torch = spike_times(solution.t.numpy(), solution.v[k - 1][0, :, j].numpy())
            assert len(in_spice) == len(in_torch), (k, j, in_spice, in_torch)
            np.testing.assert_allclose(in_torch, in_spice, atol=20e-9)
            spikes += len(in_spice)
        assert spikes >= 3  # the comparison saw spikes in every layer
