"""From a trained checkpoint to ngspice: netlists of test samples, and the verification of the
network's predictions in ngspice against the torch solver's."""

from memspice.deploy.export import VERIFY_SETTINGS, export_netlist, input_waveforms
from memspice.deploy.verify import merge, summarize, verify

__all__ = ["VERIFY_SETTINGS", "export_netlist", "input_waveforms", "merge", "summarize", "verify"]
