import numpy as np
import pydicom
import pytest

from arcade_pacs.pipeline.analyse import analyse_frames
from arcade_pacs.pipeline.frames import decode_frames


def test_analysis_of_the_real_cine_with_the_tiny_model(rubo, tiny_classifier):
    frames = decode_frames(pydicom.dcmread(rubo))
    a = analyse_frames(frames, tiny_classifier.predict, threshold=0.0, keyframes=4)
    f = a.finding
    assert len(f.frame_numbers) == 4
    assert all(1 <= n <= 96 for n in f.frame_numbers)
    assert f.frame_numbers == [i + 1 for i in a.keyframes]  # 1-based DICOM numbers
    assert a.window_scores.shape == (4, 9)
    assert 0.0 <= f.probability <= 1.0
    assert f.present
    assert len(f.regions) == 36  # threshold 0: every window is marked
    assert all(r.frame_number in f.frame_numbers for r in f.regions)
    assert a.opacification.shape == (96,)


def test_regions_map_back_to_source_pixels():
    from arcade_pacs.pipeline.frames import Frames

    frames = Frames(data=np.zeros((1, 512, 512), np.float32), valid=np.ones((512, 512), bool), rows=1024, columns=1024)
    a = analyse_frames(frames, lambda x: np.ones(len(x)), threshold=0.5, keyframes=8)
    boxes = {r.box for r in a.finding.regions}
    assert (0.0, 0.0, 512.0, 512.0) in boxes
    assert (512.0, 512.0, 1024.0, 1024.0) in boxes


def test_two_pass_source_analysis_equals_the_in_memory_one(rubo, tiny_classifier):
    from arcade_pacs.pipeline.analyse import analyse_source
    from arcade_pacs.pipeline.frames import FrameSource

    in_memory = analyse_frames(decode_frames(rubo), tiny_classifier.predict, 0.5, keyframes=8)
    source = FrameSource(rubo)
    streamed = analyse_source(source, tiny_classifier.predict, 0.5, keyframes=8)
    assert streamed.keyframes == in_memory.keyframes
    np.testing.assert_allclose(streamed.opacification, in_memory.opacification, rtol=1e-4)
    assert streamed.finding.probability == pytest.approx(in_memory.finding.probability, abs=1e-5)
    assert len(source.read([3, 7]).data) == 2  # the second pass decodes only what is asked


def test_two_pass_scaling_for_monochrome1_and_12_bit(rubo):
    from arcade_pacs.pipeline.frames import FrameSource
    from arcade_pacs.pipeline.keyframes import frame_opacification, opacification
    from tests.factory import real_frame, xa_dataset

    frames = np.stack([real_frame(rubo, i) for i in (0, 50)]).astype(np.uint16)
    source = FrameSource(xa_dataset(4095 - frames * 16, bits_stored=12, photometric="MONOCHROME1"))
    scores = source.scan(frame_opacification)
    reference = decode_frames(xa_dataset(frames.astype(np.uint8)))
    np.testing.assert_allclose(source.read().data, reference.data, atol=1e-3)
    np.testing.assert_allclose(scores, opacification(reference.data, reference.valid), rtol=1e-3)
