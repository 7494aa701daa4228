"""A trained network with one test sample as its input, as a complete ngspice netlist."""

from __future__ import annotations

import numpy as np
import torch

from memspice.circuit import SYNAPSE_KINDS
from memspice.errors import ConfigError
from memspice.hardware import Chip
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import membrane_node, network_netlist
from memspice.netlist.stimuli import PWL

#: ngspice settings of exported networks: looser than the ground-truth settings of
#: ``memspice validate`` (reltol 1e-6, 5 ns) because a 784-128-10 network is 200k elements, but
#: with a maximum step of 20 ns, a tenth of the torch step and of the spike's rise; KLU where
#: the ngspice has it (42 and later; :class:`~memspice.netlist.builder.TranSettings`).
VERIFY_SETTINGS = {"reltol": 1e-4, "max_step": 20e-9, "step": 10e-9, "matrix": "klu"}


def input_waveforms(samples: np.ndarray, dt: float) -> list[PWL]:
    """One PWL source per input row from its values on the grid ``t_n = n·dt`` (V, or A for
    current sources; ``(n_steps + 1, n_in)``): only the corners are kept, so a constant row is
    three points."""
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[0]
    t = np.round(np.arange(n) * dt, 15)  # femtosecond resolution: 1e-05, not 9.999999999999999e-06
    waves = []
    for row in samples.T:
        bend = np.ones(n, dtype=bool)
        if n > 2:
            bend[1:-1] = np.abs(row[:-2] - 2 * row[1:-1] + row[2:]) > 1e-12
        waves.append(PWL(t[bend], row[bend]))
    return waves


def export_netlist(trained, x: np.ndarray, index: int, label: int | None = None, synapse: str = "resistor",
                   settings: dict | None = None, title: str | None = None, chip: Chip | None = None) -> str:
    """The ngspice netlist of ``trained`` (:class:`memspice.train.loop.Trained`) driven by the
    encoded sample ``x`` (pixels ``(n_in,)``, dataset row ``index``) over the training window;
    only the output membranes ``v(l{L}_m{j})`` are saved. ``chip``: the network as that chip
    holds it (:meth:`memspice.hardware.Chip.apply`)."""
    if synapse not in SYNAPSE_KINDS:
        raise ConfigError(f"synapse must be one of {SYNAPSE_KINDS}; got {synapse!r}")
    trained.check_settings()  # dt and the circuit come from the network; a config that differs is refused
    config = trained.config
    pixels = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, -1)
    rows = trained.encode(pixels, torch.tensor([int(index)]))[0].numpy()
    network = trained.model.describe(synapse, chip=chip)
    currents = None
    if chip is not None and chip.spec.read_noise:
        currents = [input_waveforms(chip.read_noise(k, crossbar.g_pos, crossbar.g_neg, [index], len(rows))[0],
                                    trained.model.dt)
                    for k, (crossbar, _) in enumerate(network.layers)]
    layers = len(network.layers)
    options = {**VERIFY_SETTINGS, **(settings or {})}
    tran = TranSettings(t_end=round(trained.t_end, 15), **options)
    outputs = [f"v({membrane_node(layers, j)})" for j in range(network.sizes[-1])]
    heading = title or (f"memspice: {config.dataset} network {'-'.join(map(str, network.sizes))}, test sample {index}"
                        + (f" (label {label})" if label is not None else ""))
    return network_netlist(network, input_waveforms(rows, trained.model.dt), tran, title=heading, save=outputs,
                           currents=currents)
