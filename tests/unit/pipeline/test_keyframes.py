import numpy as np
import pydicom

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
