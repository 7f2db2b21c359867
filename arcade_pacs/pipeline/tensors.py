"""Frames to model tensors: the one preprocessing path shared by training and inference.

A frame (2-D float array in [0, 1]) is resized to 512x512 (the resolution of the ARCADE
images the model was trained on), then cut into a 3x3 grid of 256x256 windows at stride 128.
Each window is resampled to 224x224 and its grey level duplicated into three channels.

Training samples windows of other sizes, positions, small rotations and flips with TensorFlow's
``ImageProjectiveTransformV3`` inside its input graph (:mod:`arcade_pacs.training.resample`);
serving resamples with :func:`sample_windows`, the same arithmetic in numpy, so a worker never
loads TensorFlow. A test holds the two equal on real frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SIZE = 512
"""Side of the square frame the grid is laid on (ARCADE images are 512x512)."""
WINDOW_SIZE = 256
"""Side of one grid window, in pixels of the 512x512 frame."""
WINDOW_STRIDE = 128
"""Step between grid windows: 3x3 overlapping windows cover the frame."""
MODEL_INPUT = 224
"""Side of the network's input tensor (EfficientNet-Lite0 and -B0 alike)."""


@dataclass(frozen=True)
class Window:
    """A square window on the 512x512 frame, in pixels (0-based, ``x1``/``y1`` exclusive)."""

    x0: float
    y0: float
    size: float

    @property
    def x1(self) -> float:
        return self.x0 + self.size

    @property
    def y1(self) -> float:
        return self.y0 + self.size

    def scaled(self, sx: float, sy: float) -> tuple[float, float, float, float]:
        """Return ``(x0, y0, x1, y1)`` in another frame's pixels (e.g. the source 1024x1024)."""
        return (self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)


def grid_windows(
    frame_size: int = FRAME_SIZE, window: int = WINDOW_SIZE, stride: int = WINDOW_STRIDE
) -> list[Window]:
    """Return the fixed grid of windows, row by row (3x3 for the defaults)."""
    starts = range(0, frame_size - window + 1, stride)
    return [Window(float(x), float(y), float(window)) for y in starts for x in starts]


GRID = grid_windows()


def resize_frame(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """Resize a 2-D float frame to ``size`` x ``size`` with area averaging (no aliasing of thin vessels)."""
    from PIL import Image

    frame = np.asarray(frame, dtype=np.float32)
    if frame.shape == (size, size):
        return frame
    img = Image.fromarray(frame, mode="F")
    return np.asarray(img.resize((size, size), resample=Image.Resampling.BOX), dtype=np.float32)


def window_transforms(
    windows: list[Window] | np.ndarray,
    out_size: int = MODEL_INPUT,
    angles: np.ndarray | None = None,
    hflips: np.ndarray | None = None,
    vflips: np.ndarray | None = None,
) -> np.ndarray:
    """Projective transforms (TensorFlow's 8-parameter form) mapping output pixels to frame pixels.

    Parameters
    ----------
    windows
        ``Window`` objects or an ``(N, 3)`` array of ``x0, y0, size``.
    angles
        Rotation of each window about its centre, radians (training augmentation; 0 at inference).
    hflips, vflips
        Booleans per window: mirror the window left-right / top-bottom.
    """
    if not isinstance(windows, np.ndarray):
        windows = np.array([[w.x0, w.y0, w.size] for w in windows], dtype=np.float64)
    n = len(windows)
    x0, y0, size = windows[:, 0], windows[:, 1], windows[:, 2]
    scale = size / out_size
    angles = np.zeros(n) if angles is None else np.asarray(angles, dtype=np.float64)
    fx = np.where(np.zeros(n, bool) if hflips is None else hflips, -1.0, 1.0)
    fy = np.where(np.zeros(n, bool) if vflips is None else vflips, -1.0, 1.0)
    cos, sin = np.cos(angles), np.sin(angles)
    c_out = (out_size - 1) / 2.0
    cx, cy = x0 + (size - 1) / 2.0, y0 + (size - 1) / 2.0
    # frame_x = cx + scale * (cos * fx*(x - c) - sin * fy*(y - c)), same for y with sin/cos.
    a0, a1 = scale * cos * fx, -scale * sin * fy
    b0, b1 = scale * sin * fx, scale * cos * fy
    a2 = cx - a0 * c_out - a1 * c_out
    b2 = cy - b0 * c_out - b1 * c_out
    zeros = np.zeros(n)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(np.float32)


def _reflect(coord: np.ndarray, length: int) -> np.ndarray:
    """TensorFlow's ``REFLECT`` fill (``dcba|abcd|dcba``) of float coordinates, then clamped.

    The arithmetic of ``MapCoordinate<float, FILL_REFLECT>`` in TensorFlow's
    ``image_ops.h``, done in float32 as there, so windows match the training op bit for bit
    (measured: 0.0 on all 1,800 val grid windows and on random augmented ones;
    ``tests/unit/pipeline/test_resample.py``).
    """
    c = coord.astype(np.float32, copy=True)
    if length <= 1:
        return np.zeros_like(c)
    sz2 = np.float32(2 * length)
    low = c < 0
    if low.any():
        v = c[low]
        shift = v < sz2  # always for negative v: TensorFlow folds whole periods first
        v = np.where(shift, sz2 * np.trunc(-v / sz2).astype(np.float32) + v, v)
        v = np.where(v < -length, v + sz2, -v - 1)
        c[low] = v
    high = c > length - 1
    if high.any():
        v = c[high]
        v = v - sz2 * np.trunc(v / sz2).astype(np.float32)
        v = np.where(v >= length, sz2 - v - 1, v)
        c[high] = v
    return np.clip(c, 0.0, np.float32(length - 1))


def sample_windows(frames, transforms, out_size: int = MODEL_INPUT) -> np.ndarray:
    """Resample windows of frames into ``(N, out_size, out_size, 3)`` float32 tensors in [0, 1].

    ``frames`` is ``(N, H, W)`` or ``(N, H, W, 1)`` (float in [0, 1] or uint8 scaled by 1/255),
    one frame per transform (TensorFlow's 8-parameter projective form, see
    :func:`window_transforms`). Bilinear interpolation; pixels outside the frame reflect.

    numpy only, so serving never loads TensorFlow. It computes what training's
    ``ImageProjectiveTransformV3`` computes (:func:`arcade_pacs.training.resample.sample_windows_tf`,
    the same arithmetic in float32); a test holds the two together.
    """
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        frames = frames.astype(np.float32) / np.float32(255.0)
    frames = frames.astype(np.float32, copy=False)
    if frames.ndim == 4:
        frames = frames[..., 0]
    n, height, width = frames.shape
    t = np.asarray(transforms, dtype=np.float32).reshape(n, 8)
    grid = np.arange(out_size, dtype=np.float32)
    out = np.empty((n, out_size, out_size), dtype=np.float32)
    for i in range(n):
        a0, a1, a2, b0, b1, b2, c0, c1 = t[i]
        if a1 == 0 and b0 == 0 and c0 == 0 and c1 == 0:
            out[i] = _axis_aligned(frames[i], a0 * grid + a2, b1 * grid + b2)
        else:
            out[i] = _general(frames[i], t[i], grid)
    np.clip(out, 0.0, 1.0, out=out)
    return rgb(out)


def rgb(grey: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` grey windows as the model's ``(..., H, W, 3)`` input: a read-only view.

    The three channels of an angiogram are the same picture, so they are not copied: the
    engine copies one batch at a time into its input, and a job's 72 windows (144 passes with
    their mirrors, also a view) hold 14 MB instead of 130 MB (the worker's peak memory, issue 19).
    """
    grey = np.asarray(grey)
    return np.broadcast_to(grey[..., np.newaxis], (*grey.shape, 3))


def _taps(coord: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of reflected, clamped coordinates: indices and weights of both neighbours.

    The neighbour past the last pixel reads TensorFlow's fill value 0 (its weight is 0 there):
    its index is clamped and its weight zeroed, which gives the same sum.
    """
    c = _reflect(coord, length)
    lo = np.floor(c)
    i0 = lo.astype(np.intp)
    w1 = c - lo
    w0 = (lo + np.float32(1.0)) - c
    i1 = i0 + 1
    w1 = np.where(i1 < length, w1, np.float32(0.0)).astype(np.float32)
    return i0, np.minimum(i1, length - 1), w0.astype(np.float32), w1


def _axis_aligned(frame: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A window without rotation (every grid window; scaled and flipped ones too): separable.

    Interpolates along x, then along y: ``wy0 * (wx0 a + wx1 b) + wy1 * (wx0 c + wx1 d)``, the
    very grouping of TensorFlow's kernel, so the result is the same to the last bit.
    """
    height, width = frame.shape
    x0, x1, wx0, wx1 = _taps(xs.astype(np.float32), width)
    y0, y1, wy0, wy1 = _taps(ys.astype(np.float32), height)
    rows = np.union1d(y0, y1)
    sub = frame[rows]
    across = wx0 * sub[:, x0] + wx1 * sub[:, x1]  # (rows, out)
    top, bottom = across[np.searchsorted(rows, y0)], across[np.searchsorted(rows, y1)]
    return wy0[:, np.newaxis] * top + wy1[:, np.newaxis] * bottom


def _general(frame: np.ndarray, t: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Any projective transform (training's rotated windows): every output pixel on its own."""
    height, width = frame.shape
    ox, oy = grid[np.newaxis, :], grid[:, np.newaxis]
    projection = t[6] * ox + t[7] * oy + np.float32(1.0)
    x0, x1, wx0, wx1 = _taps((t[0] * ox + t[1] * oy + t[2]) / projection, width)
    y0, y1, wy0, wy1 = _taps((t[3] * ox + t[4] * oy + t[5]) / projection, height)
    top = wx0 * frame[y0, x0] + wx1 * frame[y0, x1]
    bottom = wx0 * frame[y1, x0] + wx1 * frame[y1, x1]
    return wy0 * top + wy1 * bottom


def frame_tensors(frame: np.ndarray, windows: list[Window] = GRID) -> np.ndarray:
    """One frame (any size, float in [0, 1]) to the grid's ``(len(windows), 224, 224, 3)`` tensors
    (a read-only view of the grey windows: :func:`rgb`)."""
    frame512 = resize_frame(frame)
    stack = np.broadcast_to(frame512, (len(windows), *frame512.shape))
    return sample_windows(stack, window_transforms(windows))


def stack_tensors(tensors: list[np.ndarray]) -> np.ndarray:
    """Several frames' :func:`frame_tensors` as one ``(N, 224, 224, 3)`` view, grey copied once."""
    return rgb(np.concatenate([t[..., 0] for t in tensors], axis=0))
