"""The generated torch functions: autograd against finite differences, dtypes, batching."""

from __future__ import annotations

import pytest
import torch
from conftest import VOLTAGE_RANGE, random_points

from memspice.codegen.torch_functions import torch_device
from memspice.devices import MODELS

# A parameter of each model to differentiate with respect to (a conductance or a threshold).
GRAD_PARAMETER = {"threshold_switch": "th", "synapse": "gmax", "mif": "gon2", "relaxation_neuron": "th"}


def _inputs(name, dtype=torch.float64, n=8):
    model = MODELS[name]
    v, x, params = random_points(model, n=n, seed=3)
    return model, torch.tensor(v, dtype=dtype), torch.tensor(x, dtype=dtype), params[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_match_finite_differences(name):
    model, v, x, params = _inputs(name)
    dev = torch_device(model)
    pname = GRAD_PARAMETER[name]
    unit = abs(params[pname])
    v.requires_grad_(True)
    x.requires_grad_(True)
    # q is the parameter in units of its own size, so one finite-difference step suits all inputs.
    q = torch.full((len(v),), params[pname] / unit, dtype=torch.float64, requires_grad=True)

    def f(v, x, q):
        out = dev.evaluate(v, x, {**params, pname: q * unit})
        # Outputs scaled to O(1) so that gradcheck's absolute tolerance is meaningful.
        return out.currents / 1e-5, out.charges / 1e-12, out.derivatives / 1e6

    assert torch.autograd.gradcheck(f, (v, x, q), eps=1e-7, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float32_agrees_with_float64(name):
    model, v64, x64, params = _inputs(name)
    dev = torch_device(model)
    a = dev.evaluate(v64, x64, params)
    b = dev.evaluate(v64.float(), x64.float(), params)
    assert b.currents.dtype == torch.float32 and b.derivatives.dtype == torch.float32
    for ref, low in zip(a, b):
        torch.testing.assert_close(low.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batched_evaluation_equals_pointwise(name):
    model, v, x, params = _inputs(name)
    dev = torch_device(model)
    batch = dev.evaluate(v.reshape(2, 4, -1), x.reshape(2, 4, -1), params)
    assert batch.currents.shape == (2, 4, len(model.ports))
    assert batch.derivatives.shape == (2, 4, len(model.states))
    for k in range(len(v)):
        one = dev.evaluate(v[k], x[k], params)
        torch.testing.assert_close(batch.currents.reshape(len(v), -1)[k], one.currents, rtol=0, atol=0)
        torch.testing.assert_close(batch.derivatives.reshape(len(v), -1)[k], one.derivatives, rtol=0, atol=0)


def test_threshold_switch_is_hysteretic():
    """Between hold and th the steady state depends on where the device came from."""
    dev = torch_device(MODELS["threshold_switch"])
    v = torch.full((2, 2), 0.0, dtype=torch.float64)
    v[:, 0] = 0.3  # between hold = 0.2 and th = 0.4
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    for _ in range(20000):  # relax with explicit Euler at 1 ns
        x = x + 1e-9 * dev.evaluate(v, x).derivatives
    assert x[0, 0] < 0.01 and x[1, 0] > 0.99


def test_synapse_reads_leave_state_unchanged():
    dev = torch_device(MODELS["synapse"])
    lo, hi = VOLTAGE_RANGE["synapse"]
    v = torch.zeros(200, 2, dtype=torch.float64)
    v[:, 0] = torch.linspace(-1.99, 1.99, 200, dtype=torch.float64)
    x = torch.full((200, 1), 0.5, dtype=torch.float64)
    assert torch.all(dev.evaluate(v, x).derivatives == 0)
    v[:, 0] = torch.linspace(2.01, hi, 200, dtype=torch.float64)
    assert torch.all(dev.evaluate(v, x).derivatives > 0)
    v[:, 0] = torch.linspace(lo, -2.01, 200, dtype=torch.float64)
    assert torch.all(dev.evaluate(v, x).derivatives < 0)


def test_shape_mismatch_is_reported():
    dev = torch_device(MODELS["mif"])
    with pytest.raises(ValueError, match=r"expected v \(\.\.\., 1\) and x \(\.\.\., 2\)"):
        dev.evaluate(torch.zeros(3, 2), torch.zeros(3, 2))
