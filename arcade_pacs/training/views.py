"""Test-time views of the evaluation grid, scored once and combined offline.

Model selection (the model card's "options tried") compares members (trained models) and
test-time augmentation views on ``val``. Each view is a deterministic transform of every grid
window (mirrored, rotated about its centre, or a larger/smaller window with the same centre,
resampled to 224 px); scoring a view costs one pass per window. The raw per-view window
scores of each member are kept (:class:`ViewBank`), so any combination of members and views is
evaluated without scoring again, and its inference cost is simply the number of passes per
window it averages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from arcade_pacs.pipeline.tensors import FRAME_SIZE, GRID, sample_windows, window_transforms
from arcade_pacs.training.data import Split, window_labels
from arcade_pacs.training.evaluate import GRID_ARRAY, SplitScores


@dataclass(frozen=True)
class View:
    """One deterministic view of each grid window."""

    name: str
    hflip: bool = False
    vflip: bool = False
    angle_deg: float = 0.0
    scale: float = 1.0  # window side relative to the grid's 256 px, same centre

    def transforms(self) -> np.ndarray:
        """The 8-parameter transforms of the grid's windows for this view."""
        windows = GRID_ARRAY.astype(np.float64).copy()
        size = windows[:, 2] * self.scale
        windows[:, 0] += (windows[:, 2] - size) / 2
        windows[:, 1] += (windows[:, 2] - size) / 2
        windows[:, 2] = size
        n = len(windows)
        return window_transforms(
            windows,
            angles=np.full(n, math.radians(self.angle_deg)),
            hflips=np.full(n, self.hflip),
            vflips=np.full(n, self.vflip),
        )


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("original"),
        View("hflip", hflip=True),
        View("vflip", vflip=True),
        View("hvflip", hflip=True, vflip=True),
        View("rot+10", angle_deg=10.0),
        View("rot-10", angle_deg=-10.0),
        View("scale1.25", scale=1.25),
        View("scale1.25-hflip", hflip=True, scale=1.25),
        View("scale0.8", scale=0.8),
    )
}
"""Every view the options may combine; ``original`` + ``hflip`` is the product's default TTA."""


def view_tensors(image512: np.ndarray, view: View) -> np.ndarray:
    """The grid windows of one 512x512 image (float in [0, 1]) seen through ``view``."""
    assert image512.shape == (FRAME_SIZE, FRAME_SIZE)
    stack = np.broadcast_to(image512.astype(np.float32), (len(GRID), FRAME_SIZE, FRAME_SIZE))
    return sample_windows(stack, view.transforms())


@dataclass
class ViewBank:
    """Raw window scores ``(N, 9)`` of one member on one split, per view, with the labels."""

    member: str
    split: str
    scores: dict[str, np.ndarray]
    labels: np.ndarray
    boxes: list[np.ndarray]

    def combine(self, views: Sequence[str]) -> np.ndarray:
        """The mean of the named views' scores (what serving with those views would compute)."""
        return np.mean([self.scores[v] for v in views], axis=0)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            meta=json.dumps({"member": self.member, "split": self.split}),
            labels=self.labels,
            boxes=np.array([json.dumps(b.tolist()) for b in self.boxes]),
            **{f"view:{k}": v for k, v in self.scores.items()},
        )

    @classmethod
    def load(cls, path: Path) -> ViewBank:
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        scores = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("view:")}
        boxes = [np.array(json.loads(str(b)), dtype=np.float64).reshape(-1, 4) for b in data["boxes"]]
        return cls(meta["member"], meta["split"], scores, data["labels"], boxes)


def score_views(
    predict: Callable[[np.ndarray], np.ndarray],
    split: Split,
    views: Sequence[View],
    member: str,
    bank: ViewBank | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ViewBank:
    """Score ``views`` of every grid window of ``split`` (adding to ``bank`` when given)."""
    labels = np.stack([window_labels(GRID_ARRAY, b) for b in split.boxes]).astype(np.int8)
    bank = bank or ViewBank(member, split.name, {}, labels, list(split.boxes))
    for view in views:
        if view.name in bank.scores:
            continue
        out = np.zeros((len(split), len(GRID)), dtype=np.float64)
        for i in range(len(split)):
            out[i] = np.asarray(predict(view_tensors(split.images[i].astype(np.float32) / 255.0, view))).reshape(-1)
            if progress and (i + 1) % 50 == 0:
                progress(view.name, i + 1, len(split))
        bank.scores[view.name] = out
    return bank


def as_split_scores(bank: ViewBank, window_scores: np.ndarray) -> SplitScores:
    """Combined scores in the evaluation protocol's form (for :func:`~arcade_pacs.training.evaluate.metrics`)."""
    return SplitScores(window_scores, bank.labels, bank.boxes)


@dataclass(frozen=True)
class Option:
    """One way to serve: which members, which views, averaged (probabilities)."""

    members: tuple[str, ...]
    views: tuple[str, ...]

    @property
    def passes_per_window(self) -> int:
        return len(self.members) * len(self.views)

    def label(self) -> str:
        return f"{'+'.join(self.members)} × {'+'.join(self.views)}"

    def to_json(self) -> dict:
        return asdict(self)


def option_scores(banks: dict[str, ViewBank], option: Option) -> np.ndarray:
    """Mean over members of each member's mean over views."""
    return np.mean([banks[m].combine(option.views) for m in option.members], axis=0)
