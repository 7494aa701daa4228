"""Non-ideal chips: device and circuit effects that the torch solver and the netlister apply identically."""

from memspice.hardware.chip import NEURON_GROUPS, Chip, HardwareSpec, load_spec
from memspice.hardware.presets import PRESETS

__all__ = ["NEURON_GROUPS", "PRESETS", "Chip", "HardwareSpec", "load_spec"]
