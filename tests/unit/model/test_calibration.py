import numpy as np
import pytest

from arcade_pacs.model.calibration import IDENTITY, Platt
from arcade_pacs.training.calibrate import fit_platt, reliability


def test_platt_is_strictly_increasing_and_round_trips():
    p = Platt(1.7, -0.4)
    s = np.linspace(0.001, 0.999, 500)
    out = p(s)
    assert np.all(np.diff(out) > 0)
    assert 0 < out.min()
    assert out.max() < 1
    assert Platt.from_json(p.to_json()) == p
    assert p.inverse(float(p(np.array([0.3]))[0])) == pytest.approx(0.3, abs=1e-9)
    assert Platt.from_json(None) is IDENTITY
    assert IDENTITY.is_identity
    np.testing.assert_allclose(IDENTITY(s), s, atol=1e-12)
    with pytest.raises(ValueError):
        Platt(-1.0, 0.0)  # a decreasing map would reverse decisions


def test_fit_recovers_a_known_miscalibration_and_lowers_the_ece(rng):
    z = rng.normal(size=20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(2.0 * z + 0.5)))).astype(int)
    scores = 1 / (1 + np.exp(-z))  # over-cautious raw scores
    fitted = fit_platt(scores, labels)
    assert fitted.a == pytest.approx(2.0, abs=0.15)
    assert fitted.b == pytest.approx(0.5, abs=0.1)
    assert reliability(fitted(scores), labels)["ece"] < 0.3 * reliability(scores, labels)["ece"]


def test_reliability_bins_a_hand_checked_case():
    r = reliability(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 1, 1, 1]), bins=10)
    assert r["count"][0] == 2
    assert r["count"][9] == 2
    assert r["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
