"""A feed-forward fully memristive SNN as a torch module: crossbars + neuron layers + buffers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from memspice.circuit import PULSE_TAU, Network, NeuronLayer, row_buffer
from memspice.devices import MIF, DeviceModel
from memspice.errors import ConfigError
from memspice.hardware import Chip
from memspice.nn.crossbar import (
    COLUMN_CONDUCTANCE,
    INIT_NEG,
    INIT_POS,
    ON_OFF_RATIO,
    MemristiveCrossbar,
    conductance_range,
)
from memspice.nn.layer import MemristiveLayer
from memspice.solver.options import SolverOptions, solver_options
from memspice.solver.transient import Solution, simulate_network


class MemristiveSNN(nn.Module):
    """Layers ``sizes = (n_in, n_hidden..., n_out)`` of differential crossbars and neurons of
    ``neuron_model`` (a one-port :class:`~memspice.devices.DeviceModel`: the MIF neuron unless
    another is given; ``neuron_params``: overrides of its defaults); layer ``k > 1``'s rows are
    buffers of layer ``k-1``'s membranes (the only non-memristive periphery,
    :class:`~memspice.circuit.RowBuffer`): ``±buffer_gain`` times them, or with a
    ``buffer_knee`` (V) rectified, so that only what lies above it drives the next layer; with
    ``buffer_rail`` (V), saturating at ±that; with ``pulse_gain`` (V/V), plus (after the rail)
    each neuron's pulse extender of time constant ``pulse_tau`` (s), the charge of its recent
    spikes (:class:`~memspice.circuit.PulseExtender`; :meth:`forward` only, not the step-wise
    layers).
    Crossbar ``k``'s conductance range is :func:`~memspice.nn.crossbar.conductance_range` of its
    fan-in.

    The network is the chain of its step-wise layers (:attr:`layers`,
    :class:`~memspice.nn.MemristiveLayer`, one crossbar and its neurons each): stepping them in
    order is :meth:`forward`, which solves the chain in one run (and adds what only whole runs
    do: adaptive steps, checkpointing, chips).

    ``forward`` integrates the circuit as ``solver`` says (:class:`~memspice.solver.SolverOptions`,
    or a step dt in s with the default options; an attribute too): on the grid ``t_n = n·dt`` with
    its method; ``checkpoint_every`` steps trades recomputation for memory in the backward pass;
    ``fused`` compiles each Newton iteration and each step's gradient into one kernel with
    torch's inductor compiler (:mod:`memspice.solver.fused`): the same numerics, several times faster
    once compiled; ``tolerance``: the local error every step is checked against
    (:mod:`memspice.solver.accuracy`; ``None``: no estimate), which each solution reports in
    ``errors``. Of these, ``dt``, ``method`` and ``checkpoint_every`` are part of :meth:`config`.
    ``init_pos``, ``init_neg``: the input crossbar's initial fractions of its conductance range
    (:class:`~memspice.nn.MemristiveCrossbar`); ``deep_init_pos``, ``deep_init_neg``: those of every
    later crossbar. They are not part of :meth:`config`: a checkpoint's weights replace the
    initial ones.
    ``parametrization``: every crossbar's map from parameters to conductances
    (:mod:`memspice.nn.crossbar`); call :meth:`project_` after each optimizer step."""

    def __init__(self, sizes: Sequence[int], neuron_params: Mapping[str, float] | None = None,
                 buffer_gain: float = 2.0, solver: SolverOptions | float = SolverOptions(),
                 column_conductance: float = COLUMN_CONDUCTANCE, on_off_ratio: float = ON_OFF_RATIO, seed: int = 0,
                 init_pos: tuple[float, float] = INIT_POS, init_neg: tuple[float, float] = INIT_NEG,
                 parametrization: str = "sigmoid", deep_init_pos: tuple[float, float] = INIT_POS,
                 deep_init_neg: tuple[float, float] = INIT_NEG, neuron_model: DeviceModel = MIF,
                 buffer_knee: float | None = None, pulse_gain: float | None = None,
                 pulse_tau: float = PULSE_TAU, buffer_rail: float | None = None) -> None:
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise ConfigError(f"sizes must be two or more positive integers (n_in, ..., n_out); got {sizes!r}")
        generator = torch.Generator().manual_seed(seed)
        self.sizes, self._solver = sizes, solver_options(solver)
        self.buffer = row_buffer(float(buffer_gain), buffer_knee, pulse_gain, pulse_tau, buffer_rail)
        self.column_conductance, self.on_off_ratio = float(column_conductance), float(on_off_ratio)
        self.parametrization = parametrization
        # the parameters live here, so that the state dict's names stay those of every checkpoint
        self.crossbars = nn.ModuleList(
            MemristiveCrossbar(n_in, n_out, *conductance_range(n_in, column_conductance, on_off_ratio),
                     init_pos=init_pos if k == 0 else deep_init_pos, init_neg=init_neg if k == 0 else deep_init_neg,
                     parametrization=parametrization, generator=generator)
            for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])))
        self.neuron_model = neuron_model
        # a plain list, not submodules: the layers own no parameters beyond these crossbars
        self.layers = [MemristiveLayer(crossbar.n_in, crossbar.n_out, neuron_params, solver=_stepwise(self._solver),
                                       crossbars=[crossbar], neuron_model=neuron_model, **self.buffer.settings())
                       for crossbar in self.crossbars]
        self.describe()  # validates the network as the netlister will

    @property
    def solver(self) -> SolverOptions:
        """How :meth:`forward` integrates (:class:`~memspice.solver.SolverOptions`); setting it sets
        every layer's too (less what belongs to whole runs: adaptive steps, checkpointing)."""
        return self._solver

    @solver.setter
    def solver(self, solver: SolverOptions | float) -> None:
        self._solver = solver_options(solver)
        for layer in self.layers:
            layer.solver = _stepwise(self._solver)

    @property
    def buffer_gain(self) -> float:
        """The row buffers' gain (V/V): :attr:`buffer`'s."""
        return self.buffer.gain

    @property
    def dt(self) -> float:
        """The solver's step (s): :attr:`solver`'s ``dt``."""
        return self.solver.dt

    @property
    def method(self) -> str:
        """The solver's integration method: :attr:`solver`'s ``method``."""
        return self.solver.method

    def project_(self) -> None:
        """Put every crossbar's parameters back where they belong (call after each optimizer step)."""
        for crossbar in self.crossbars:
            crossbar.project_()

    def hidden_spike_ablation(self) -> list[dict[str, float] | None]:
        """``neuron_overrides`` (:meth:`forward`) that keep every hidden neuron from spiking: its
        depolarizing switch M1 conducts as OFF whatever its state (``gon1 = goff1``), so it cannot
        turn on. What a network loses under it is what it owes to its hidden spikes. MIF neurons
        only: another device has no switch M1 to keep off."""
        if self.neuron_model is not MIF:
            raise ConfigError(f"the hidden-spike ablation keeps the MIF neuron's switch M1 off; this network's neurons "
                              f"are {self.neuron_model.name}")
        hidden = [{"gon1": layer.device_params()["goff1"]} for layer in self.layers[:-1]]
        return [*hidden, None]

    def config(self) -> dict:
        """The constructor arguments (JSON-serializable): a checkpoint rebuilds the module from them."""
        return {"sizes": list(self.sizes), "neuron_model": self.neuron_model.name,
                "neuron_params": dict(self.layers[0].overrides),
                **self.buffer.settings(), "dt": self.dt, "method": self.method,
                "column_conductance": self.column_conductance, "on_off_ratio": self.on_off_ratio,
                "checkpoint_every": self.solver.checkpoint_every, "parametrization": self.parametrization}

    def forward(self, inputs: torch.Tensor, record_states: bool = False,
                neuron_overrides: Sequence[Mapping[str, float | torch.Tensor] | None] | None = None,
                adaptive: bool = False, chip: Chip | None = None, samples: torch.Tensor | None = None) -> Solution:
        """Integrate the network driven by the row voltages ``inputs`` (V, ``(batch, n_steps + 1,
        n_in)``, linear between samples) from rest; the solution's ``v[k]`` are layer ``k+1``'s
        membranes (V, ``(batch, n_steps + 1, n_k)``).

        ``neuron_overrides[k]``: device parameters that replace layer ``k+1``'s for this call only
        (floats, or tensors that broadcast to ``(n_k,)``: a tensor changes without recompiling
        the fused kernels), e.g. an annealed threshold or an ablation; the circuit the module
        describes and netlists keeps its own. ``adaptive``: error-controlled substeps within each
        step of dt (:func:`~memspice.solver.simulate_network`), for evaluation: the grid stays
        the output. ``chip``: the network as that chip holds it (:mod:`memspice.hardware`: its
        programmed conductances, wires and its neurons' own parameters; differentiable in the
        weights); ``samples``: the dataset indices of the batch, which seed a chip's read noise."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.sizes[0]:
            raise ConfigError(f"inputs must be (batch, n_steps + 1, {self.sizes[0]}); got {tuple(inputs.shape)}")
        if chip is not None:
            self.check_chip(chip)
        weights = [(c.g_pos.to(inputs.dtype), c.g_neg.to(inputs.dtype)) for c in self.crossbars]
        if neuron_overrides is not None and len(neuron_overrides) != len(self.layers):
            raise ConfigError(f"neuron_overrides needs one entry per layer ({len(self.layers)}); "
                             f"got {len(neuron_overrides)}")
        params = [{**layer.overrides, **(extra or {})}
                  for layer, extra in zip(self.layers, neuron_overrides or [None] * len(self.layers))]
        noise = rest = None
        if chip is not None:
            ranges = [(c.g_min, c.g_max) for c in self.crossbars]
            programmed = [chip.program(k, g_pos, g_neg, ranges[k]) for k, (g_pos, g_neg) in enumerate(weights)]
            weights = [chip.ports(k, *sides) for k, sides in enumerate(programmed)]
            nominal = [{**layer.device_params(), **p} for layer, p in zip(self.layers, params)]
            params = [chip.neuron_params(k, p, inputs) for k, p in enumerate(nominal)]
            trims = [chip.trims(k, p, port.self_load) for k, (p, port) in enumerate(zip(nominal, weights))]
            noise = self._chip_currents(chip, programmed, [None if t is None else t[0] for t in trims],
                                        inputs.shape[:2], samples)
            rest = [None if t is None else t[1].detach() for t in trims]  # a start: a constant in the gradient
        solver = self.solver if adaptive is False else self.solver.replace(adaptive=adaptive)
        return simulate_network(weights, inputs, solver, params, self.buffer, self.neuron_model,
                                record_states=record_states, column_noise=noise, rest=rest)

    @staticmethod
    def _chip_currents(chip: Chip, programmed: Sequence[tuple[torch.Tensor, torch.Tensor]],
                       trims: Sequence[torch.Tensor | None], shape: tuple[int, int],
                       samples: torch.Tensor | None) -> list[torch.Tensor | None] | None:
        """What ``chip`` injects into each layer's membranes (A, ``(batch, n_steps + 1, n_k)`` or
        None per layer; None for none): its read noise for the dataset indices ``samples`` and its
        neurons' trim currents ``trims`` (A, ``(n_k,)`` or None per layer, :meth:`Chip.trims`)."""
        if not chip.spec.read_noise and all(t is None for t in trims):
            return None
        noise = [None] * len(trims)
        if chip.spec.read_noise:
            if samples is None or len(samples) != shape[0]:
                raise ConfigError("a chip with read noise needs the dataset index of every sample (samples=...)")
            noise = [torch.as_tensor(chip.read_noise(k, *(g.detach().cpu() for g in sides), samples.tolist(),
                                                     shape[1]), dtype=sides[0].dtype, device=sides[0].device)
                     for k, sides in enumerate(programmed)]
        return [c if t is None else t.expand(*shape, t.shape[0]) + (0.0 if c is None else c)
                for c, t in zip(noise, trims)]

    def check_chip(self, chip: Chip) -> None:
        """A ConfigError unless ``chip`` can hold this network: sampled for its layer sizes, and
        its neurons MIF neurons (a chip varies their parameters)."""
        if chip.sizes != self.sizes:
            raise ConfigError(f"the chip was sampled for a {'-'.join(map(str, chip.sizes))} network; this one is "
                              f"{'-'.join(map(str, self.sizes))}")
        if self.neuron_model is not MIF:
            raise ConfigError(f"chips vary MIF neurons (memspice.hardware); this network's neurons are "
                              f"{self.neuron_model.name}")

    def describe(self, synapse: str = "resistor", chip: Chip | None = None) -> Network:
        """The trained circuit as a :class:`memspice.circuit.Network` (for the netlister), with
        ideal resistors or memristors (programmed states) as synapses; as ``chip`` holds it when
        given (:meth:`memspice.hardware.Chip.apply`)."""
        layers = tuple((c.describe(), NeuronLayer(layer.out_features, layer.overrides, model=self.neuron_model))
                       for c, layer in zip(self.crossbars, self.layers))
        network = Network(layers, synapse=synapse, **self.buffer.settings())
        return network if chip is None else chip.apply(network)

    def extra_repr(self) -> str:
        return (f"sizes={'-'.join(map(str, self.sizes))}, neurons={self.neuron_model.name}, dt={self.dt:g} s, "
                f"method={self.method}")


def _stepwise(solver: SolverOptions) -> SolverOptions:
    """``solver`` for a step-wise layer: without what only whole runs do (adaptive steps,
    checkpointing)."""
    return solver.replace(checkpoint_every=None, adaptive=False)
