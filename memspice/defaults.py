"""Defaults that several parts of memspice share, each defined once here.

* ``DT`` (s) and ``METHOD``: the torch solver's fixed step and method. The default MIF neuron was
  re-timed for them: 25 steps per inter-spike interval at 2 µA, where the solver follows
  ngspice's spike times within 1 % of the interval (docs/solver.md has the measurements).
* ``SPIKE_THRESHOLD`` (V): the network readouts' spikes (training, ``evaluate``, ``verify``, in
  both engines) are upward crossings of this membrane voltage. The MIF neuron's M1 threshold is
  0.40 V and its spikes peak near 0.55 V, so only spikes cross it. ``memspice validate`` reads a
  neuron model's own :class:`~memspice.devices.SpikeEvent` (the MIF's M1 turning on) where it
  has one, and this level where it has none.
* ``EVAL_BATCH_SIZE``: samples per solver batch where no gradient is taken (evaluation, chips,
  scoring a calibration): larger batches amortize the solver's per-step overhead.
"""

DT = 200e-9
METHOD = "radau5"
SPIKE_THRESHOLD = 0.45
EVAL_BATCH_SIZE = 256
