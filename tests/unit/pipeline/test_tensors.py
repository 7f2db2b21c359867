import numpy as np

from arcade_pacs.pipeline.tensors import (
    GRID,
    MODEL_INPUT,
    frame_tensors,
    resize_frame,
    sample_windows,
    stack_tensors,
    window_transforms,
)


def test_grid_is_3x3_windows_of_256_at_stride_128():
    assert len(GRID) == 9
    assert {(w.x0, w.y0) for w in GRID} == {(x, y) for x in (0, 128, 256) for y in (0, 128, 256)}
    assert all(w.size == 256 for w in GRID)


def test_identity_scale_window_is_an_exact_crop(rng):
    frame = rng.random((512, 512)).astype(np.float32)
    windows = np.array([[100.0, 50.0, MODEL_INPUT]])
    out = sample_windows(frame[None], window_transforms(windows))
    assert out.shape == (1, 224, 224, 3)
    np.testing.assert_allclose(out[0, ..., 0], frame[50:274, 100:324], atol=1e-6)
    np.testing.assert_array_equal(out[0, ..., 0], out[0, ..., 2])  # grey duplicated to RGB


def test_flips_mirror_the_window(rng):
    frame = rng.random((512, 512)).astype(np.float32)
    w = np.array([[10.0, 20.0, MODEL_INPUT]])
    h = sample_windows(frame[None], window_transforms(w, hflips=np.array([True])))[0, ..., 0]
    v = sample_windows(frame[None], window_transforms(w, vflips=np.array([True])))[0, ..., 0]
    crop = frame[20:244, 10:234]
    np.testing.assert_allclose(h, crop[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(v, crop[::-1], atol=1e-6)


def test_frame_tensors_shape_range_and_uint8_path_agree(rng):
    frame = rng.integers(0, 256, (512, 512)).astype(np.uint8)
    a = frame_tensors(frame.astype(np.float32) / 255.0)
    b = sample_windows(np.broadcast_to(frame, (9, 512, 512)), window_transforms(GRID))
    assert a.shape == (9, 224, 224, 3)
    assert a.dtype == np.float32
    assert 0.0 <= a.min()
    assert a.max() <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-6)  # training (uint8) and inference (float) paths agree


def test_resize_frame_area_averages():
    frame = np.zeros((1024, 1024), np.float32)
    frame[::2, ::2] = 1.0
    small = resize_frame(frame)
    assert small.shape == (512, 512)
    np.testing.assert_allclose(small, 0.25, atol=1e-6)


def test_tensors_hold_the_grey_windows_once(rng):
    frames = [rng.random((512, 512)).astype(np.float32) for _ in range(2)]
    each = [frame_tensors(f) for f in frames]
    both = stack_tensors(each)
    assert both.shape == (18, 224, 224, 3)
    assert both.strides[-1] == 0  # three channels, one copy of the picture in memory
    assert not both.flags.writeable
    np.testing.assert_array_equal(both, np.concatenate([np.asarray(t) for t in each]))
