"""ARCADE stenosis data: loading a split and deriving window labels from stenosis boxes.

ARCADE's stenosis task has practically no negative images (every val/test image holds a
stenosis), so labels are derived from regions: a window is **positive** when it contains the
centre of a stenosis box and at least half of that box's area, **negative** when it intersects
no stenosis box, and **ignored** otherwise (a partly visible lesion is neither).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STENOSIS_CATEGORY_ID = 26
"""COCO category id of "stenosis" in the ARCADE annotation files."""


class DatasetError(ValueError):
    """The dataset folder is missing, incomplete or malformed; the message names what."""


@dataclass(frozen=True)
class Split:
    """One ARCADE split in memory.

    Attributes
    ----------
    name
        ``train``, ``val`` or ``test``.
    images
        ``(N, 512, 512)`` uint8 grey images.
    boxes
        One ``(K, 4)`` float array per image of stenosis boxes ``x0, y0, x1, y1`` (pixels).
    file_names
        Image file names, in the same order.
    """

    name: str
    images: np.ndarray
    boxes: list[np.ndarray]
    file_names: list[str]

    def __len__(self) -> int:
        return len(self.file_names)


def split_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    """Return ``(images_dir, annotations_json)`` for ``split`` in ARCADE's layout."""
    root = Path(data_dir) / "stenosis" / split
    return root / "images", root / "annotations" / f"{split}.json"


def check_layout(data_dir: Path, splits: tuple[str, ...] = ("train", "val")) -> None:
    """Fail early, naming what is missing, before any time is spent loading or training.

    Raises
    ------
    DatasetError
        When a split's images folder or annotation file is missing.
    """
    for split in splits:
        images, annotations = split_paths(data_dir, split)
        if not images.is_dir():
            raise DatasetError(f"missing images folder: {images}")
        if not annotations.is_file():
            raise DatasetError(f"missing annotation file: {annotations}")


def load_split(data_dir: Path, split: str, limit: int | None = None) -> Split:
    """Load the images and stenosis boxes of one split.

    Raises
    ------
    DatasetError
        When the folder layout, the JSON or an image is missing or malformed.
    """
    from PIL import Image

    check_layout(data_dir, (split,))
    images_dir, ann_path = split_paths(data_dir, split)
    try:
        coco = json.loads(ann_path.read_text())
        entries = sorted(coco["images"], key=lambda e: e["id"])
        annotations = coco["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"malformed COCO annotation file {ann_path}: {exc}") from exc
    present = {p.name for p in images_dir.iterdir()}
    entries = [e for e in entries if e.get("file_name") in present]
    if not entries:
        raise DatasetError(f"no annotated images of {ann_path.name} found in {images_dir}")
    if limit is not None:
        entries = entries[:limit]
    boxes_by_image: dict[int, list[list[float]]] = {}
    for ann in annotations:
        if ann.get("category_id") != STENOSIS_CATEGORY_ID:
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"malformed bbox in annotation {ann.get('id')}: {exc}") from exc
        boxes_by_image.setdefault(ann["image_id"], []).append([x, y, x + w, y + h])
    images = np.zeros((len(entries), 512, 512), dtype=np.uint8)
    boxes, names = [], []
    for i, entry in enumerate(entries):
        path = images_dir / entry["file_name"]
        try:
            with Image.open(path) as img:
                grey = img.convert("L")
                if grey.size != (512, 512):
                    sx, sy = 512 / grey.size[0], 512 / grey.size[1]
                    grey = grey.resize((512, 512), Image.Resampling.BOX)
                else:
                    sx = sy = 1.0
                images[i] = np.asarray(grey)
        except OSError as exc:
            raise DatasetError(f"unreadable image {path}: {exc}") from exc
        b = np.array(boxes_by_image.get(entry["id"], []), dtype=np.float64).reshape(-1, 4)
        boxes.append(b * np.array([sx, sy, sx, sy]))
        names.append(entry["file_name"])
    return Split(name=split, images=images, boxes=boxes, file_names=names)


def window_labels(windows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Label windows against one image's stenosis boxes.

    Parameters
    ----------
    windows
        ``(N, 3)`` array of ``x0, y0, size`` (pixels of the 512x512 image).
    boxes
        ``(K, 4)`` array of ``x0, y0, x1, y1``.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int8: 1 positive, 0 negative, -1 ignored (see the module docstring).
    """
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.zeros(len(windows), dtype=np.int8)
    if len(boxes) == 0 or len(windows) == 0:
        return labels
    wx0, wy0 = windows[:, 0:1], windows[:, 1:2]
    wx1, wy1 = wx0 + windows[:, 2:3], wy0 + windows[:, 2:3]
    bx0, by0, bx1, by1 = (boxes[:, i][None, :] for i in range(4))
    ix = np.clip(np.minimum(wx1, bx1) - np.maximum(wx0, bx0), 0, None)
    iy = np.clip(np.minimum(wy1, by1) - np.maximum(wy0, by0), 0, None)
    inter = ix * iy
    area = np.maximum((bx1 - bx0) * (by1 - by0), 1e-9)
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    centre_in = (cx >= wx0) & (cx < wx1) & (cy >= wy0) & (cy < wy1)
    positive = (centre_in & (inter >= 0.5 * area)).any(axis=1)
    touches = (inter > 0).any(axis=1)
    labels[touches] = -1
    labels[positive] = 1
    return labels
