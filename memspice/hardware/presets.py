"""Named chips (:class:`~memspice.hardware.chip.HardwareSpec`), each number with where it comes from.

* ``ideal``: the circuit as trained; every chip of it equals the ideal network.
* ``wan2022``: programming error of the HfOx 1T1R RRAM of the NeuRRAM chip, W. Wan et al., "A
  compute-in-memory chip based on resistive random-access memory", Nature 608, 504-512 (2022),
  one second after write-verify programming: σ between 0.35 and 2.3 µS over a 0-40 µS range,
  1.73 µS on average (the 4th-order fit of its Extended Data that aihwkit ships as
  ``ReRamWan2022NoiseModel``); memspice takes the average, 1.73 / 40 = 4.3 % of the range, as
  a σ that does not depend on the state. The paper's other effects (relaxation over days, read
  noise) are not in this preset.
* ``stress``: not a measured chip but a demanding one, the scenario issue 22 sets as the target
  of hardware-aware training: 16 conductance levels (4 bits), 2 % programming error, 10 %
  device-to-device spread of every cell's g_min and g_max and of every neuron's thresholds,
  on-conductances and capacitance, 1 % stuck cells (half at g_min, half at g_max). Neurons that
  vary by 10 % are what breaks a network (benchmarks/robustness_sweep.py): each effect on the
  synapses alone costs the Fashion-MNIST network little, while a 3 % spread of its switching
  voltages costs it 16 points;
* ``stress-neurons2``: the stress chip's synapses with neurons that vary by 2 % (on-conductances,
  capacitance and switching voltages): a chip whose neurons were matched or trimmed, again a
  demanding case rather than a measured one.
* ``stress-trimmed``, ``stress-neurons2-trimmed``: those chips calibrated after programming, each
  neuron's membrane capacitance and threshold offset trimmed by 6-bit DACs (:mod:`memspice.hardware.chip`, "Trims"),
  as analog neuromorphic chips calibrate their neurons (BrainScaleS-2: Aamir et al., IEEE TCAS-I
  65(12), 2018; Billaudelle et al., ISCAS 2020); the resolution is memspice's choice, not a
  measured chip's.
* ``stress-switch-trimmed``: the stress chip as a chip maker would ship it: each neuron's
  switches trimmed where they sit by 6-bit DACs, their series sources and on-conductances
  (``trim_scheme="switch"``, as BrainScaleS-2 sets each neuron's potentials from per-neuron DACs:
  Hock et al., ISCAS 2013), its capacitance by the capacitor bank as above, and every stuck cell's
  partner programmed to keep its pair's difference (``compensate_stuck``,
  :mod:`memspice.hardware.chip`); the resolution is memspice's choice, not a measured chip's.
* ``stress-wired-switch-trimmed``: that chip with resistive wires, 10 Ω per cell segment in tiles
  of 128x128 (memspice's choice, not a measured chip's): the issue's target scenario (10 % spread
  of synapses and neurons, 16 levels, 1 % stuck cells, wires).
"""

from __future__ import annotations

import dataclasses

from memspice.hardware.chip import HardwareSpec

PRESETS = {
    "ideal": HardwareSpec(name="ideal"),
    "wan2022": HardwareSpec(name="wan2022", program_noise=1.73 / 40),
    "stress": HardwareSpec(name="stress", levels=16, program_noise=0.02, range_spread=0.1, stuck_off=0.005,
                           stuck_on=0.005, neuron_spread=0.1, threshold_spread=0.1),
    "stress-neurons2": HardwareSpec(name="stress-neurons2", levels=16, program_noise=0.02, range_spread=0.1,
                                    stuck_off=0.005, stuck_on=0.005, neuron_spread=0.02, threshold_spread=0.02),
}
#: The trims of the ``-trimmed`` presets (bits).
TRIM_BITS = 6
PRESETS |= {f"{name}-trimmed": dataclasses.replace(PRESETS[name], name=f"{name}-trimmed", trim_bits=TRIM_BITS)
            for name in ("stress", "stress-neurons2")}
PRESETS["stress-switch-trimmed"] = dataclasses.replace(PRESETS["stress-trimmed"], name="stress-switch-trimmed",
                                                       trim_scheme="switch", compensate_stuck=True)
PRESETS["stress-wired-switch-trimmed"] = dataclasses.replace(PRESETS["stress-switch-trimmed"],
                                                             name="stress-wired-switch-trimmed", wire_resistance=10.0,
                                                             tile_size=128)
