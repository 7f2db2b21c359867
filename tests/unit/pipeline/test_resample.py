"""Serving's numpy window resampling against training's TensorFlow op, on real ARCADE frames.

Training cuts windows with ``ImageProjectiveTransformV3`` inside its graph; serving computes
the same arithmetic in numpy so that no serving process loads TensorFlow. The two must give the
same windows: the grid the model serves, and the sizes, rotations, flips and off-frame
positions (reflected) training samples.
"""

import numpy as np
import pytest

from arcade_pacs.model.golden import val_images
from arcade_pacs.pipeline.tensors import GRID, sample_windows, window_transforms
from arcade_pacs.training.resample import sample_windows_tf

MAX_DIFF = 1e-5
"""Largest difference allowed in a window pixel (in [0, 1]); 1/255 is one grey level."""


@pytest.fixture(scope="module")
def frames(arcade_dir):
    return list(val_images(arcade_dir / "stenosis" / "val" / "images", 6))


def test_the_served_grid_is_the_training_op_s(frames):
    worst = 0.0
    for frame in frames:
        stack = np.broadcast_to(frame, (len(GRID), 512, 512))
        ours, theirs = sample_windows(stack, window_transforms(GRID)), sample_windows_tf(stack, window_transforms(GRID))
        assert ours.shape == (9, 224, 224, 3)
        assert ours.dtype == np.float32
        worst = max(worst, float(np.abs(ours - theirs.numpy()).max()))
    assert worst <= MAX_DIFF, worst


def test_training_s_augmented_windows_match_too(frames, rng):
    """Random sizes, positions (partly off the frame: reflected), rotations and flips; float and uint8."""
    n = 24
    worst = 0.0
    for frame in frames:
        windows = np.stack([rng.uniform(-150, 450, n), rng.uniform(-150, 450, n), rng.uniform(120, 360, n)], axis=1)
        t = window_transforms(windows, angles=rng.uniform(-0.4, 0.4, n), hflips=rng.random(n) < 0.5,
                              vflips=rng.random(n) < 0.5)
        stack = np.broadcast_to(frame, (n, 512, 512))
        for x in (stack, np.rint(stack * 255).astype(np.uint8)[..., np.newaxis]):
            worst = max(worst, float(np.abs(sample_windows(x, t) - sample_windows_tf(x, t).numpy()).max()))
    assert worst <= MAX_DIFF, worst
