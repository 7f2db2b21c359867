"""Keyframes: the contrast-filled frames of a cine run, the ones worth classifying.

The classifier was trained on ARCADE keyframes, in which contrast fills the arteries. Before
injection a frame shows no vessels and must neither dilute nor drive the result. Contrast
shows as thin dark ridges, so each frame's *opacification* is measured with a morphological
black top-hat (grey closing minus the frame) at vessel scale, on a 256x256 copy, inside the
exposed field: the mean of the strongest 2 % of responses. The ``k`` frames with the highest
opacification are the keyframes (all frames when there are no more than ``k``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

TOPHAT_SIZE = 7
"""Structuring element side at 256x256: dark structures narrower than ~14 px at 512 (vessels)."""
TOP_FRACTION = 0.02


def black_tophat(frame: np.ndarray) -> np.ndarray:
    """Dark thin structures (contrast-filled vessels) of a 2-D frame: grey closing minus frame."""
    from scipy import ndimage

    return ndimage.grey_closing(frame, size=(TOPHAT_SIZE, TOPHAT_SIZE)) - frame


def vessel_map(frame512: np.ndarray, cell: int = 16) -> np.ndarray:
    """Mean dark-ridge response per ``cell`` x ``cell`` block of a 512x512 frame (at 256x256)."""
    small = half(np.asarray(frame512, np.float32))
    tophat = black_tophat(small)
    k = cell // 2
    return tophat.reshape(256 // k, k, 256 // k, k).mean(axis=(1, 3))


def frame_opacification(frame: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Opacification of one 512x512 display frame: mean of the strongest 2 % of the black
    top-hat at 256x256, inside the exposed field (eroded: the closing reaches past its edge).

    Scale-equivariant (a frame multiplied by ``a > 0`` scores ``a`` times as much), which lets
    :meth:`arcade_pacs.pipeline.frames.FrameSource.scan` score frames before normalising them.
    """
    frame = np.asarray(frame, dtype=np.float32)
    h, w = frame.shape
    mask = _field(None if valid is None else np.packbits(valid).tobytes(), (h, w))
    values = black_tophat(half(frame))
    values = values[mask] if mask is not None else values.ravel()
    n = max(1, int(TOP_FRACTION * values.size))
    return float(np.partition(values, values.size - n)[-n:].mean())


def half(frame: np.ndarray) -> np.ndarray:
    """The 2x2 block mean of an even-sided 2-D float32 frame (15x faster than ``reshape().mean()``,
    which a 60-frame scan called 60 times: equal to it within float32 rounding)."""
    r = frame.reshape(frame.shape[0] // 2, 2, frame.shape[1] // 2, 2)
    return (r[:, 0, :, 0] + r[:, 0, :, 1] + r[:, 1, :, 0] + r[:, 1, :, 1]) * np.float32(0.25)


@lru_cache(maxsize=8)
def _field(packed: bytes | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The exposed field (``packed`` bits of the full-size mask; ``None``: all of the frame) at
    half resolution, eroded by the closing's reach; ``None`` when nothing is left (every value
    then counts). Cached by the mask's bits: a run's frames share one field, whose erosion was a
    third of the scan's time when made anew for each frame."""
    from scipy import ndimage

    h, w = shape
    if packed is None:
        mask = np.ones((h // 2, w // 2), bool)
    else:
        valid = np.unpackbits(np.frombuffer(packed, np.uint8), count=h * w).astype(bool).reshape(h, w)
        mask = valid.reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3))
    if mask.any():
        mask = ndimage.binary_erosion(mask, iterations=TOPHAT_SIZE)
    if not mask.any():
        return None
    mask.flags.writeable = False
    return mask


def opacification(frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Opacification score per frame of ``(T, 512, 512)`` frames in [0, 1]; higher = more contrast."""
    return np.array([frame_opacification(frame, valid) for frame in frames], dtype=np.float64)


def select_keyframes(scores: np.ndarray, k: int) -> list[int]:
    """0-based indices of the ``k`` highest-scoring frames, in frame order."""
    scores = np.asarray(scores)
    if len(scores) <= k:
        return list(range(len(scores)))
    top = np.argsort(-scores, kind="stable")[:k]
    return sorted(int(i) for i in top)


def plot_opacification(scores: np.ndarray, chosen: list[int], path, title: str = "") -> None:
    """Write the per-frame opacification curve with the keyframes marked, as a PNG."""
    from arcade_pacs.core import figures

    numbers = np.arange(1, len(scores) + 1)
    fig, ax = figures.subplots(figsize=(7, 3), dpi=100)
    ax.plot(numbers, scores, c="tab:blue", lw=1.2, label="opacification (dark-ridge top-hat)")
    ax.scatter(numbers[chosen], np.asarray(scores)[chosen], c="tab:red", zorder=3, label=f"keyframes (k={len(chosen)})")
    ax.set_xlabel("frame number")
    ax.set_ylabel("opacification")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    figures.save(fig, path)
