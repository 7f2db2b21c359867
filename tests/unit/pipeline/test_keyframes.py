import numpy as np
import pydicom
import pytest

from arcade_pacs.pipeline.frames import decode_frames
from arcade_pacs.pipeline.keyframes import opacification, select_keyframes


def test_precontrast_frames_of_the_real_cine_are_not_keyframes(rubo):
    frames = decode_frames(pydicom.dcmread(rubo))
    scores = opacification(frames.data, frames.valid)
    chosen = select_keyframes(scores, 8)
    assert len(chosen) == 8
    assert min(chosen) >= 20, chosen  # the first frames (no contrast yet) are never chosen
    # Opacification rises as contrast fills the arteries: late frames score well above the first ones.
    assert scores[chosen].min() > 1.5 * scores[:5].mean()


def test_dark_ridges_score_higher_than_a_flat_frame():
    flat = np.full((512, 512), 0.6, np.float32)
    vessels = flat.copy()
    vessels[:, 100:104] = 0.1
    vessels[300:303, :] = 0.1
    scores = opacification(np.stack([flat, vessels]))
    assert scores[1] > scores[0] + 0.1


def test_select_keyframes_all_when_few_and_in_frame_order():
    assert select_keyframes(np.array([0.3]), 8) == [0]
    assert select_keyframes(np.array([0.1, 0.9, 0.5, 0.8]), 2) == [1, 3]


def _reference_opacification(frame, valid=None):
    """The first, plain form of the measure (2x2 mean by reshape, the field eroded per frame)."""
    from scipy import ndimage

    from arcade_pacs.pipeline.keyframes import TOP_FRACTION, TOPHAT_SIZE, black_tophat

    small = frame.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    mask = np.ones((256, 256), bool) if valid is None else valid.reshape(256, 2, 256, 2).all(axis=(1, 3))
    if mask.any():
        mask = ndimage.binary_erosion(mask, iterations=TOPHAT_SIZE)
    values = black_tophat(small)
    values = values[mask] if mask.any() else values.ravel()
    n = max(1, int(TOP_FRACTION * values.size))
    return float(np.partition(values, values.size - n)[-n:].mean())


def test_the_fast_measure_equals_the_plain_one_on_the_real_cine_with_and_without_a_field(rubo):
    from arcade_pacs.pipeline.keyframes import frame_opacification

    frames = decode_frames(pydicom.dcmread(rubo))
    shutter = np.zeros((512, 512), bool)
    shutter[40:470, 60:500] = True
    nothing_left = np.zeros((512, 512), bool)
    nothing_left[100:110, 100:110] = True  # eroded away: every value counts, as before
    for frame in frames.data[::7]:
        for valid in (None, frames.valid, shutter, nothing_left):
            assert frame_opacification(frame, valid) == pytest.approx(_reference_opacification(frame, valid), rel=1e-5)
