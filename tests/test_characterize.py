"""`memspice characterize mif`: f–I curve and spike shape, measured in ngspice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import memspice

from memspice.signals import spike_shapes


def characterize(*args: str) -> dict:
    result = memspice("characterize", "mif", "--min-current", "0.5e-6", "--max-current", "4e-6", "--points", "4",
                      "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.ngspice
def test_fi_curve_and_shape_of_the_default_neuron(tmp_path):
    png = tmp_path / "fi.png"
    report = characterize("--plot", str(png))
    assert report["engine"] == "ngspice" and report["settings"]["reltol"] == 1e-6
    assert report["params"]["ton2"] == 0.6e-6  # the re-timed default
    np.testing.assert_allclose(report["currents_A"], [0.5e-6, 1e-6, 2e-6, 4e-6])
    assert report["spike_counts"] == [8, 13, 20, 29]  # measured when the defaults were chosen
    assert report["rates_hz"][2] == pytest.approx(20 / 100e-6)
    assert report["rheobase_A"] == pytest.approx(0.5e-6)
    assert report["isi_s"] == pytest.approx(4.98e-6, rel=0.01)
    assert report["peak_V"] == pytest.approx(0.545, rel=0.01)
    assert 0.35 < report["threshold_V"] < 0.45  # the kink sits near M1's 0.40 V threshold
    assert 0.2e-6 < report["width_s"] < 0.5e-6  # a sixth of the ISI: what a 200 ns step resolves
    assert -0.1 < report["undershoot_V"] < 0.0
    assert 1e-6 < report["refractory_s"] < report["isi_s"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.ngspice
def test_fi_curve_and_shape_match_the_design_figures():
    report = characterize("--preset", "kang2021")
    assert report["params"]["ton2"] == 0.1e-6
    counts = report["spike_counts"]
    assert counts[:3] == [5, 10, 16] and counts[3] in (22, 23)  # the KANG2021 neuron's measured f–I points
    assert report["isi_s"] == pytest.approx(6.47e-6, rel=0.01)
    assert report["peak_V"] == pytest.approx(0.484, rel=0.01)
    assert 20e-9 < report["width_s"] < 0.2e-6
    assert -0.3 < report["undershoot_V"] < -0.1


def test_spike_shapes_of_a_synthetic_spike_train():
    """Logistic upstrokes and linear downstrokes: every measure is known in closed form."""
    def logistic(z):
        return 1 / (1 + np.exp(-z))

    t = np.linspace(0, 30e-6, 600001)
    phase = np.mod(t, 10e-6)
    tau = 0.05e-6
    upstroke = -0.15 + 0.65 * logistic((phase - 8.5e-6) / tau)
    v = np.where(phase < 8e-6, -0.2 + 0.05 * phase / 8e-6,  # slow recovery from -0.2 V
                 np.where(phase < 9e-6, upstroke, upstroke.max() - 0.7 * (phase - 9e-6) / 1e-6))
    peak = -0.15 + 0.65 * logistic(10.0)
    v = np.where(phase >= 9e-6, peak - 0.7 * (phase - 9e-6) / 1e-6, v)
    shapes = spike_shapes(t, v, threshold=0.45, rest=-0.175)
    # the largest curvature of a logistic lies 1.317 time constants before its midpoint
    threshold = -0.15 + 0.65 * logistic(-np.log(2 + np.sqrt(3)))
    half = (threshold + peak) / 2
    p = (half + 0.15) / 0.65
    width = (0.5e-6 - tau * np.log(p / (1 - p))) + (peak - half) / 0.7 * 1e-6
    assert len(shapes["peak"]) == 3
    np.testing.assert_allclose(shapes["threshold"], threshold, atol=2e-4)
    np.testing.assert_allclose(shapes["peak"], peak, atol=1e-6)
    np.testing.assert_allclose(shapes["width"], width, rtol=1e-3)
    np.testing.assert_allclose(shapes["undershoot"][:2], -0.2, atol=1e-4)
    assert np.isnan(shapes["undershoot"][2])  # the trace ends before the last recovery
    np.testing.assert_allclose(shapes["refractory"][:2], (1e-6 + 4e-6), rtol=1e-3)


def test_bad_grid_is_refused():
    result = memspice("characterize", "mif", "--points", "0")
    assert result.returncode == 2 and "expected a positive whole number, got '0'" in result.stderr
