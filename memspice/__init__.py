"""memspice: circuit-level SPICE co-simulation for fully memristive spiking neural networks."""

__version__ = "0.1.0"
