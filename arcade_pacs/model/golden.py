"""Golden pairs: real ``val`` windows with Keras' outputs, stored beside the model, and the check.

A derived form is served only after it gave Keras' answers: on the whole ``val`` grid where the
form is built (:mod:`.build`), and on these pairs at every load (:mod:`.forms`), which needs no
data folder: the windows travel in ``<stem>_golden.npz`` with the digest of the weights whose
outputs they hold. Two conditions, both at build and at load: ``max |p_form - p_keras|`` within
the form's tolerance, and no window's TTA decision at the stored threshold flipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcade_pacs.model.engine import Engine, EngineCheckError
from arcade_pacs.pipeline.tensors import rgb

MAX_ABS_DIFF = 1e-4
"""Largest difference in probability allowed between a float32 form and Keras, any pass."""
GOLDEN_WINDOWS = 36
"""Golden windows stored with a model (each also scored mirrored: 72 passes, ~0.5 s to check)."""
GOLDEN_SOURCE_IMAGES = 16


def window_tensors(windows: np.ndarray) -> np.ndarray:
    """Golden uint8 windows ``(N, 224, 224)`` -> model input ``(2N, 224, 224, 3)``: as given, then mirrored."""
    x = np.asarray(windows, dtype=np.float32) / 255.0
    return rgb(np.concatenate([x, x[:, :, ::-1]], axis=0))


@dataclass(frozen=True)
class Golden:
    """Real ``val`` windows with the outputs Keras gave for them (as given, then mirrored)."""

    windows: np.ndarray  # (N, 224, 224) uint8
    probabilities: np.ndarray  # (2N,) float32
    digest: str  # of the .keras file whose outputs these are

    @staticmethod
    def path_for(model_path: Path) -> Path:
        model_path = Path(model_path)
        return model_path.with_name(model_path.stem + "_golden.npz")

    @classmethod
    def read(cls, model_path: Path) -> Golden | None:
        path = cls.path_for(model_path)
        if not path.is_file():
            return None
        with np.load(path) as data:
            return cls(data["windows"], data["probabilities"], str(data["digest"]))

    def write(self, model_path: Path) -> Path:
        path = self.path_for(model_path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, windows=self.windows, probabilities=self.probabilities, digest=np.array(self.digest))
        tmp.replace(path)
        return path

    def tensors(self) -> np.ndarray:
        return window_tensors(self.windows)


def val_images(images_dir: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """The ``val`` split's pictures as 512x512 float frames in [0, 1], in file-name order."""
    from PIL import Image

    paths = sorted(Path(images_dir).glob("*.png"), key=lambda p: (len(p.stem), p.stem))
    if not paths:
        raise EngineCheckError(f"no val images to check an engine with in {images_dir}")
    for path in paths[:limit] if limit else paths:
        with Image.open(path) as img:
            grey = img.convert("L")
            if grey.size != (512, 512):
                grey = grey.resize((512, 512), Image.Resampling.BOX)
            yield np.asarray(grey, dtype=np.float32) / 255.0


def make_golden(reference: Engine, images_dir: Path, threshold: float, digest: str,
                windows: np.ndarray | None = None) -> Golden:
    """Score golden windows with ``reference`` (Keras); choose them from ``val`` when not given.

    Chosen: of the grid windows of the first val images, half those scored nearest the
    threshold (where a flip would show) and half spread over the range of scores.
    """
    from arcade_pacs.pipeline.tensors import frame_tensors

    if windows is None:
        tensors = np.concatenate([frame_tensors(f) for f in val_images(images_dir, GOLDEN_SOURCE_IMAGES)])
        scores = reference.predict(tensors)
        near = np.argsort(np.abs(scores - threshold))[: GOLDEN_WINDOWS // 2]
        rest = np.setdiff1d(np.argsort(scores), near)
        spread = rest[np.linspace(0, len(rest) - 1, GOLDEN_WINDOWS - len(near)).round().astype(int)]
        chosen = np.sort(np.concatenate([near, spread]))
        windows = np.clip(np.rint(tensors[chosen, :, :, 0] * 255.0), 0, 255).astype(np.uint8)
    probabilities = reference.predict(window_tensors(windows)).astype(np.float32)
    return Golden(windows=windows, probabilities=probabilities, digest=digest)


def compare(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> dict:
    """Max |difference| over passes and TTA decision flips at ``threshold``.

    Both arrays hold ``2N`` passes: ``N`` windows as given, then the same ``N`` mirrored; a
    window's decision is its TTA mean at or above the threshold (as the pipeline decides).
    """
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(-1)
    n = len(reference) // 2
    mean_ref = (reference[:n] + reference[n:]) / 2
    mean_cand = (candidate[:n] + candidate[n:]) / 2
    flips = int(np.sum((mean_ref >= threshold) != (mean_cand >= threshold)))
    diff = float(np.max(np.abs(reference - candidate))) if len(reference) else 0.0
    return {"passes": int(len(reference)), "windows": n, "max_abs_diff": diff, "flips": flips}


def passed(comparison: dict, tolerance: float = MAX_ABS_DIFF) -> bool:
    return comparison["max_abs_diff"] <= tolerance and comparison["flips"] == 0


def check_golden(engine: Engine, golden: Golden, threshold: float, tolerance: float = MAX_ABS_DIFF,
                 expected: np.ndarray | None = None) -> dict:
    """Score the golden windows with ``engine``; raise :class:`EngineCheckError` unless equal to
    ``expected`` (Keras' outputs, the default; an int8 form's own recorded outputs)."""
    reference = golden.probabilities if expected is None else expected
    result = compare(reference, engine.predict(golden.tensors()), threshold)
    if not passed(result, tolerance):
        source = "Keras" if expected is None else "its recorded outputs"
        raise EngineCheckError(
            f"{engine.name} differs from {source} on the golden windows: max |dp| {result['max_abs_diff']:.2e} "
            f"(allowed {tolerance:.0e}), {result['flips']} decision flips"
        )
    return result
