"""torch modules of fully memristive SNNs: crossbars, MIF neuron layers, networks, readouts."""

from memspice.nn.crossbar import Crossbar, conductance_range
from memspice.nn.network import MemristiveSNN
from memspice.nn.neurons import MIFLayer
from memspice.nn.readout import (
    READOUTS,
    Readout,
    membrane_max,
    membrane_mean,
    predict,
    soft_spike_counts,
    spike_counts,
)

__all__ = ["READOUTS", "Crossbar", "MIFLayer", "MemristiveSNN", "Readout", "conductance_range", "membrane_max",
           "membrane_mean", "predict", "soft_spike_counts", "spike_counts"]
