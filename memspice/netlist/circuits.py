"""Netlists of whole networks: input stimuli, differential crossbars, row buffers, neuron layers.

Node names (layers count from 1, indices from 0), also what to probe:

* ``in{i}p`` / ``in{i}n``: input row ``i`` at ``+u_i`` / ``-u_i``;
* ``l{k}_m{j}``: membrane of neuron ``j`` of layer ``k`` (:func:`membrane_node`);
* ``l{k}_r{i}p`` / ``l{k}_r{i}n``: row ``i`` of layer ``k`` driven by a buffer ``±b``
  (:class:`~memspice.circuit.RowBuffer`) of an earlier layer's membrane: ``l{k-1}_m{i}`` in a chain (rows count on
  across the layer's sources, :attr:`memspice.circuit.Network.sources`);
* ``l{k}_q{j}``: the pulse extender of neuron ``j`` of layer ``k`` (:func:`pulse_node`), when the
  buffers have them (:class:`~memspice.circuit.PulseExtender`);
* ``l{k}_c{j}``: column ``j`` of layer ``k`` when ``sense=True`` puts a 0 V source
  ``Vl{k}_sense{j}`` between column and membrane, so that ``i(vl{k}_sense{j})`` is the
  column current.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memspice.circuit import Crossbar, Network, PulseExtender, RowBuffer
from memspice.devices import SYNAPSE
from memspice.errors import NetlistError
from memspice.netlist import text
from memspice.netlist.builder import Netlist, TranSettings
from memspice.netlist.stimuli import Waveform


def membrane_node(layer: int, neuron: int) -> str:
    """Node name of neuron ``neuron`` (from 0) of layer ``layer`` (from 1)."""
    return f"l{layer}_m{neuron}"


def pulse_node(layer: int, neuron: int) -> str:
    """Node name of the pulse extender's capacitor of neuron ``neuron`` (from 0) of layer ``layer`` (from 1)."""
    return f"l{layer}_q{neuron}"


def neuron_instance(layer: int, neuron: int) -> str:
    """The subcircuit instance name of neuron ``neuron`` (from 0) of layer ``layer`` (from 1);
    ngspice calls its internal nodes ``v(x<name>.<node>)``."""
    return f"l{layer}_neuron{neuron}"


def network_netlist(
    network: Network,
    inputs: Sequence[Waveform],
    settings: TranSettings,
    title: str = "memspice network",
    sense: bool = False,
    save: Sequence[str] | None = None,
    include_dir: str | Path | None = None,
    currents: Sequence[Sequence[Waveform] | None] | None = None,
) -> str:
    """The complete ngspice netlist of ``network`` with input row ``i`` driven by the voltage
    waveform ``inputs[i]`` (V). ``save`` lists vectors to keep (default: all);
    ``include_dir`` includes the model libraries instead of writing them inline; ``currents[k][j]``
    (A) is injected into neuron ``j`` of layer ``k+1`` by the source ``Il{k+1}_noise{j}`` (a
    chip's read noise)."""
    if len(inputs) != network.sizes[0]:
        raise NetlistError(f"the network has {network.sizes[0]} inputs but {len(inputs)} stimuli were given")
    if currents is not None and len(currents) != len(network.layers):
        raise NetlistError(f"currents needs one entry per layer ({len(network.layers)}); got {len(currents)}")
    net = Netlist(title)
    net.comment(f"layers {'-'.join(map(str, network.sizes))}, {network.synapse} synapses, differential pairs")
    for _, neurons in network.layers:
        net.model(neurons.model, include_dir)
    if network.synapse == "memristor":
        net.model(SYNAPSE, include_dir)

    net.comment("input rows: +u_i drives the G+ column, -u_i (unity inverting buffer) the G- column")
    for i, stimulus in enumerate(inputs):
        net.element(f"Vin{i}", (f"in{i}p", "0"), stimulus)
        net.extend([f"Ein{i} in{i}n 0 in{i}p 0 -1"])

    for k, (crossbar, neurons) in enumerate(network.layers, start=1):
        rows_p, rows_n = _rows(net, network, k)
        membranes = [membrane_node(k, j) for j in range(neurons.size)]
        columns = membranes
        if sense:
            columns = [f"l{k}_c{j}" for j in range(neurons.size)]
            net.comment(f"layer {k}: 0 V sources measure the column currents")
            net.extend(f"Vl{k}_sense{j} {columns[j]} {membranes[j]} DC 0" for j in range(neurons.size))
        net.comment(f"layer {k}: crossbar {crossbar.n_in}x{crossbar.n_out}x2")
        net.extend(_crossbar_cards(k, crossbar, rows_p, rows_n, columns, network))
        injected = currents[k - 1] if currents is not None else None
        if injected is not None:
            if len(injected) != neurons.size:
                raise NetlistError(f"layer {k}: {len(injected)} injected currents for {neurons.size} neurons")
            net.comment(f"layer {k}: read-noise currents into the membranes")
            for j, wave in enumerate(injected):
                net.element(f"Il{k}_noise{j}", ("0", membranes[j]), wave)
        if neurons.bias is not None:
            net.comment(f"layer {k}: the neurons' threshold trims (DC currents into the membranes, which rest where "
                        "the .ic card sets them)")
            for j, current in enumerate(neurons.bias):
                net.element(f"Il{k}_trim{j}", ("0", membranes[j]), float(current))
        net.comment(f"layer {k}: {neurons.size} {neurons.model.name} neurons")
        for j, node in enumerate(membranes):
            net.instance(neuron_instance(k, j), (node,), neurons.model, neurons.neuron(j))
        if network.buffer.pulse is not None and any(k in read for read in network.layer_sources):
            net.extend(_pulse_cards(network.buffer.pulse, k, neurons.size))
    net.initial({membrane_node(k, j): float(v) for k, (_, neurons) in enumerate(network.layers, start=1)
                 if neurons.rest is not None for j, v in enumerate(neurons.rest)})
    if save:
        net.save(save)
    net.analysis(settings)
    return str(net)


def _rows(net: Netlist, network: Network, k: int) -> tuple[list[str], list[str]]:
    """The row nodes (+u, -u) of layer ``k``: the input rows, or buffers (:attr:`Network.buffer`) of
    an earlier layer's membranes, for each of its sources in order."""
    rows_p, rows_n = [], []
    for source in network.layer_sources[k - 1]:
        n = network.source_size(source)
        if source == 0:
            rows_p += [f"in{i}p" for i in range(n)]
            rows_n += [f"in{i}n" for i in range(n)]
            continue
        first = len(rows_p)
        rows_p += [f"l{k}_r{first + i}p" for i in range(n)]
        rows_n += [f"l{k}_r{first + i}n" for i in range(n)]
        net.extend(_buffer_cards(network.buffer, k, source, first, n))
    return rows_p, rows_n


def _buffer_cards(buffer: RowBuffer, k: int, source: int, first: int, n: int) -> list[str]:
    """The buffers from layer ``source``'s ``n`` membranes onto layer ``k``'s rows ``first``...:
    linear ones as voltage-controlled voltage sources, rectifying ones and those with pulse
    extenders or a rail as B-sources of :meth:`~memspice.circuit.RowBuffer.spice` (the expression
    the torch solver evaluates)."""
    gain = text.number(buffer.gain, "buffer gain")
    of = f"of layer {source}'s membranes"
    if not buffer.rectifying and buffer.pulse is None and buffer.rail is None:
        return [f"* {text.comment(f'layer {k} rows: buffers (gain +-{gain}) {of}')}",
                *(f"El{k}_b{first + i}p l{k}_r{first + i}p 0 {membrane_node(source, i)} 0 {gain}\n"
                  f"El{k}_b{first + i}n l{k}_r{first + i}n 0 {membrane_node(source, i)} 0 -{gain}" for i in range(n))]
    kind = "linear" if not buffer.rectifying else f"rectifying (knee {text.number(buffer.knee, 'buffer knee')} V)"
    extended = "" if buffer.pulse is None else " plus their pulse extenders"
    railed = "" if buffer.rail is None else f", saturating at +-{text.number(buffer.rail, 'buffer rail')} V"
    cards = [f"* {text.comment(f'layer {k} rows: {kind} buffers (gain +-{gain}{railed}) {of}{extended}')}"]
    for i in range(n):
        b = buffer.spice(membrane_node(source, i), None if buffer.pulse is None else pulse_node(source, i))
        cards += [f"Bl{k}_b{first + i}p l{k}_r{first + i}p 0 V = {b}",
                  f"Bl{k}_b{first + i}n l{k}_r{first + i}n 0 V = -({b})"]
    return cards


#: The pulse extender's leak (Ω): its capacitor is ``tau / PULSE_RESISTANCE``, its B-source's current the
#: charge expression over it, so that the node's voltage is ``Q`` (the values are a scale, not physics).
PULSE_RESISTANCE = 1e6


def _pulse_cards(pulse: PulseExtender, k: int, n: int) -> list[str]:
    """The pulse extenders of layer ``k``'s ``n`` membranes: a B-source pushing ``charge/R`` into node
    :func:`pulse_node`, which ``R`` and ``C = tau/R`` hold (``R·C·dQ/dt = charge - Q``), from 0 V."""
    ohms = text.number(PULSE_RESISTANCE, "pulse extender resistance")
    farads = text.number(pulse.tau / PULSE_RESISTANCE, "pulse extender capacitance")
    what = f"layer {k}: pulse extenders (gain {pulse.gain:g}, tau {pulse.tau:g} s, knee {pulse.knee:g} V)"
    cards = [f"* {text.comment(what)}"]
    for j in range(n):
        q = pulse_node(k, j)
        cards += [f"Bl{k}_pulse{j} 0 {q} I = ({pulse.spice_charge(membrane_node(k, j))}) / {ohms}",
                  f"Rl{k}_pulse{j} {q} 0 {ohms}",
                  f"Cl{k}_pulse{j} {q} 0 {farads} IC=0"]
    return cards


def _crossbar_cards(k, crossbar: Crossbar, rows_p, rows_n, columns, network: Network) -> list[str]:
    """One card per cell (and per wire segment), built in bulk: 200k cells of a 784x128 layer take
    a fraction of a second.

    Cards go column by column (G+ then G- of each column): ngspice's sparse matrix (Sparse 1.3)
    links its elements and picks its pivots in the order the cards create them, and a column's
    ~1 600 cells created one after the other make its set-up, ordering and every Newton iteration
    cheaper than the row order (:func:`in_row_order`): a 784-128-10 sample 1.6x faster in ngspice
    39, with the same waveforms (``benchmarks/ngspice_per_sample.py``)."""
    signs = (("gp", rows_p, crossbar.g_pos), ("gn", rows_n, crossbar.g_neg))
    if network.wire_resistance:
        return _wired_crossbar_cards(k, crossbar, signs, columns, network)
    if network.synapse == "resistor":
        ohms = {sign: text.numbers(1.0 / g, f"layer {k} resistances") for sign, _, g in signs}
        return [f"Rl{k}_{sign}{i}_{j} {rows[i]} {columns[j]} {ohms[sign][i, j]}"
                for j in range(crossbar.n_out) for sign, rows, _ in signs for i in range(crossbar.n_in)]
    own_range = dict(zip(("gmin", "gmax"), crossbar.g_range)) if crossbar.g_range else {}
    params = SYNAPSE.resolve({**network.synapse_params, **own_range})
    gmin, gmax = params["gmin"], params["gmax"]
    fixed = " ".join(f"{n}={text.number(v)}" for n, v in params.items()
                     if n != "x0" and v != SYNAPSE.parameter(n).default)
    states = {sign: text.numbers(np.clip((g - gmin) / (gmax - gmin), 0.0, 1.0), f"layer {k} synapse states")
              for sign, _, g in signs}
    return [f"Xl{k}_{sign}{i}_{j} {rows[i]} {columns[j]} synapse x0={states[sign][i, j]} {fixed}".rstrip()
            for j in range(crossbar.n_out) for sign, rows, _ in signs for i in range(crossbar.n_in)]


def _wired_crossbar_cards(k, crossbar: Crossbar, signs, columns, network: Network) -> list[str]:
    """Resistor cells on resistive wires, tile by tile (:mod:`memspice.hardware.wires`): cell
    ``(i, j)`` of side ``gp``/``gn`` joins node ``l{k}_{side}a{i}_{j}`` on its row wire to node
    ``l{k}_{side}b{i}_{j}`` on its column wire; ``Rl{k}_{side}wr{i}_{j}`` is the row segment
    before the cell (from the row's source at a tile's first column), ``Rl{k}_{side}wc{i}_{j}``
    the column segment after it (into the membrane at a tile's last row)."""
    from memspice.hardware.wires import tiles

    if network.synapse != "resistor":
        raise NetlistError("resistive wires are written with resistor synapses")
    wire = text.number(network.wire_resistance, "wire resistance")
    cards = []
    for r0, r1 in tiles(crossbar.n_in, network.tile_size):
        for c0, c1 in tiles(crossbar.n_out, network.tile_size):
            for sign, rows, g in signs:
                ohms = text.numbers(1.0 / g[r0:r1, c0:c1], f"layer {k} resistances")
                for j in range(c0, c1):
                    for i in range(r0, r1):
                        a, b = f"l{k}_{sign}a{i}_{j}", f"l{k}_{sign}b{i}_{j}"
                        before = rows[i] if j == c0 else f"l{k}_{sign}a{i}_{j - 1}"
                        after = columns[j] if i == r1 - 1 else f"l{k}_{sign}b{i + 1}_{j}"
                        cards += [f"Rl{k}_{sign}{i}_{j} {a} {b} {ohms[i - r0, j - c0]}",
                                  f"Rl{k}_{sign}wr{i}_{j} {before} {a} {wire}",
                                  f"Rl{k}_{sign}wc{i}_{j} {b} {after} {wire}"]
    return cards


_CELL = re.compile(r"^[RX]l(\d+)_g([pn])(\d+)_(\d+) ")


def in_row_order(netlist: str) -> str:
    """``netlist`` (of :func:`network_netlist`) with each crossbar's cell cards in row order
    (layer, G+ before G-, row, column) instead of column order: the same circuit, to compare
    ngspice's speed and waveforms on both."""
    lines = netlist.splitlines()
    cells = [k for k, line in enumerate(lines) if _CELL.match(line)]

    def key(line: str) -> tuple:
        layer, sign, i, j = _CELL.match(line).groups()
        return int(layer), sign == "n", int(i), int(j)

    for k, line in zip(cells, sorted((lines[k] for k in cells), key=key)):
        lines[k] = line
    return "\n".join(lines) + "\n"
