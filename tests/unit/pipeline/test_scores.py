import numpy as np
import pytest

from arcade_pacs.core.findings import Finding
from arcade_pacs.pipeline.scores import frame_probabilities, instance_probability


def test_frame_probability_is_max_over_windows():
    np.testing.assert_allclose(frame_probabilities(np.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.1]])), [0.9, 0.3])


def test_instance_probability_mean_of_top_three_resists_one_noisy_frame():
    frames = np.array([0.1, 0.15, 0.12, 0.99, 0.1, 0.11])
    assert instance_probability(frames) == pytest.approx((0.99 + 0.15 + 0.12) / 3)
    assert instance_probability(frames) < 0.5  # one spike does not make the run positive
    assert instance_probability(np.array([0.7])) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        instance_probability(np.array([]))


def test_finding_present_at_or_above_threshold():
    f = Finding(probability=0.5, threshold=0.5, frame_numbers=[1], frame_probabilities=[0.5], tta_original=0.5, tta_flipped=0.5)
    assert f.present
