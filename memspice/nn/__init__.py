"""torch modules of fully memristive SNNs: crossbars, neuron layers, networks, readouts."""

from memspice.nn.crossbar import MemristiveCrossbar, conductance_range
from memspice.nn.layer import LayerGraph, LayerState, MemristiveLayer
from memspice.nn.network import MemristiveSNN
from memspice.nn.neurons import MemristiveNeurons
from memspice.nn.readout import (
    DECIDERS,
    READOUTS,
    Readout,
    decide,
    first_spike_steps,
    latency,
    membrane_max,
    membrane_mean,
    pool_readings,
    soft_spike_counts,
    spike_counts,
)
from memspice.nn.regularizers import rate_band_penalty

__all__ = ["DECIDERS", "READOUTS", "LayerGraph", "LayerState", "MemristiveCrossbar", "MemristiveLayer",
           "MemristiveNeurons", "MemristiveSNN", "Readout", "conductance_range", "decide", "first_spike_steps",
           "latency", "membrane_max", "membrane_mean", "pool_readings", "rate_band_penalty", "soft_spike_counts",
           "spike_counts"]
