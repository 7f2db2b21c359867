import numpy as np
import pydicom

from arcade_pacs.pipeline.analyse import analyse_frames
from arcade_pacs.pipeline.frames import decode_frames


def test_analysis_of_the_real_cine_with_the_tiny_model(rubo, tiny_classifier):
    frames = decode_frames(pydicom.dcmread(rubo))
    a = analyse_frames(frames, tiny_classifier.predict, threshold=0.0, keyframes=4)
    f = a.finding
    assert len(f.frame_numbers) == 4 and all(1 <= n <= 96 for n in f.frame_numbers)
    assert f.frame_numbers == [i + 1 for i in a.keyframes]  # 1-based DICOM numbers
    assert a.window_scores.shape == (4, 9)
    assert 0.0 <= f.probability <= 1.0
    assert f.present and len(f.regions) == 36  # threshold 0: every window is marked
    assert all(r.frame_number in f.frame_numbers for r in f.regions)
    assert a.opacification.shape == (96,)


def test_regions_map_back_to_source_pixels():
    from arcade_pacs.pipeline.frames import Frames

    frames = Frames(data=np.zeros((1, 512, 512), np.float32), valid=np.ones((512, 512), bool), rows=1024, columns=1024)
    a = analyse_frames(frames, lambda x: np.ones(len(x)), threshold=0.5, keyframes=8)
    boxes = {r.box for r in a.finding.regions}
    assert (0.0, 0.0, 512.0, 512.0) in boxes and (512.0, 512.0, 1024.0, 1024.0) in boxes
