"""Bad parameters raise one ParameterError naming the parameter, the value and what is allowed."""

from __future__ import annotations

import math

import pytest
import torch

from memspice.codegen.torch_functions import torch_device
from memspice.devices import MIF, MODELS, SYNAPSE, THRESHOLD_SWITCH
from memspice.errors import ParameterError


def test_defaults_are_valid(model):
    assert model.resolve() == model.defaults()


def test_overrides_are_applied():
    values = MIF.resolve({"cm": 20e-12, "th1": 0.35})
    assert values["cm"] == 20e-12 and values["th1"] == 0.35 and values["gl"] == 1e-6


@pytest.mark.parametrize(
    "model, overrides, name, allowed",
    [
        (MIF, {"cm": -1e-12}, "cm", r"a real number in \(0, inf\) F"),
        (MIF, {"cm": 0.0}, "cm", r"\(0, inf\) F"),
        (MIF, {"gl": math.nan}, "gl", r"\[0, inf\) S"),
        (THRESHOLD_SWITCH, {"gon": "20u"}, "gon", r"\(0, inf\) S"),
        (THRESHOLD_SWITCH, {"w": True}, "w", r"\(0, inf\) V"),
        (THRESHOLD_SWITCH, {"ton": None}, "ton", r"\(0, inf\) s"),
        (SYNAPSE, {"x0": 1.5}, "x0", r"\[0, 1\]"),
        (SYNAPSE, {"vreset": 0.5}, "vreset", r"\(-inf, 0\) V"),
        (SYNAPSE, {"aset": 0.5}, "aset", r"\[1, inf\)"),
    ],
)
def test_out_of_range_or_not_a_number(model, overrides, name, allowed):
    with pytest.raises(ParameterError, match=allowed) as info:
        model.resolve(overrides)
    assert info.value.name == name
    assert info.value.model == model.name
    assert repr(overrides[name]) in str(info.value) or str(overrides[name]) in str(info.value)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ParameterError, match=r"'cap'.*one of \[.*'cm'.*\]"):
        MIF.resolve({"cap": 1e-12})


@pytest.mark.parametrize(
    "model, overrides, relation",
    [
        (THRESHOLD_SWITCH, {"hold": 0.4}, "hold < th"),
        (THRESHOLD_SWITCH, {"hold": 0.5}, "hold < th"),
        (MIF, {"th1": 0.1}, "hold1 < th1"),
        (MIF, {"hold2": 0.6}, "hold2 < th2"),
        (SYNAPSE, {"gmin": 2e-4}, "gmin < gmax"),
    ],
)
def test_violated_constraint(model, overrides, relation):
    with pytest.raises(ParameterError, match=relation):
        model.resolve(overrides)


def test_torch_functions_validate_floats_and_names():
    dev = torch_device(MIF)
    v, x = torch.zeros(1, 1), torch.zeros(1, 2)
    with pytest.raises(ParameterError, match="cm"):
        dev.evaluate(v, x, {"cm": -1.0})
    with pytest.raises(ParameterError, match="nope"):
        dev.evaluate(v, x, {"nope": torch.tensor(1.0)})
    # tensors (trainable parameters) pass through
    assert dev.evaluate(v, x, {"gl": torch.tensor([2e-6])}).currents.shape == (1, 1)


def test_every_parameter_is_documented(model):
    for p in model.parameters:
        assert p.doc and p.unit is not None and p.contains(p.default)
    assert model is MODELS[model.name]


@pytest.mark.parametrize("name", ["e", "pi", "time", "Temper"])
def test_parameter_names_ngspice_would_read_as_its_own_are_refused(name):
    """ngspice 39 reads ``e`` in an expression as 2.718 whatever ``params: e=...`` says: a model
    with such a parameter would simulate something else in SPICE than in torch."""
    from memspice.devices.model import Branch, DeviceModel, Parameter, node_voltage
    from memspice.errors import ModelDefinitionError

    p = Parameter(name.lower(), "S", 1e-6, "a conductance")
    with pytest.raises(ModelDefinitionError, match="ngspice's own constants"):
        DeviceModel("leak", "a leak", ("a",), (p,), (Branch("g", "a", "0", current=p.symbol * node_voltage("a")),))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_pickles_after_resolving_its_parameters(name):
    """Process pools and Dask workers receive device models pickled: checking a model's
    constraints must not leave anything unpicklable on it."""
    import pickle

    model = MODELS[name]
    model.resolve()
    copy = pickle.loads(pickle.dumps(model))
    assert copy.resolve() == model.resolve()
