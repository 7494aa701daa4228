"""Device models, each defined once (see :mod:`memspice.devices.model`)."""

from memspice.devices.mif import MIF
from memspice.devices.model import DeviceModel, Parameter, SpikeEvent, State, node_voltage
from memspice.devices.relaxation import RELAXATION_NEURON
from memspice.devices.synapse import SYNAPSE
from memspice.devices.threshold_switch import THRESHOLD_SWITCH
from memspice.devices.user import import_model

#: Every model memspice ships, by name; ``memspice models`` emits each of them.
MODELS: dict[str, DeviceModel] = {m.name: m for m in (THRESHOLD_SWITCH, SYNAPSE, MIF, RELAXATION_NEURON)}

__all__ = ["MIF", "MODELS", "RELAXATION_NEURON", "SYNAPSE", "THRESHOLD_SWITCH", "DeviceModel", "Parameter",
           "SpikeEvent", "State", "import_model", "node_voltage"]
