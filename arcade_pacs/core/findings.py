"""What the analysis of one instance found: typed values carried from the pipeline to the SR.

The pipeline produces a :class:`Finding`; the worker stores it (the only place it becomes
database columns and JSON, :meth:`Region.to_json`); the reporter and the admin read it back as
the same types (:meth:`arcade_pacs.db.tables.Result.finding`). The region keys are spelled here
and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Region:
    """A window at or above threshold: where the model saw a stenosis.

    ``frame_number`` is the 1-based DICOM frame number; ``box`` is ``(x0, y0, x1, y1)`` in
    pixel coordinates of the source image (columns, rows).
    """

    frame_number: int
    box: tuple[float, float, float, float]
    probability: float

    def to_json(self) -> dict:
        """The stored (and API) form: ``{"frame_number", "box": [x0, y0, x1, y1], "probability"}``."""
        return {
            "frame_number": int(self.frame_number),
            "box": [round(float(v), 2) for v in self.box],
            "probability": float(self.probability),
        }

    @classmethod
    def from_json(cls, data: dict) -> Region:
        """Inverse of :meth:`to_json`."""
        x0, y0, x1, y1 = (float(v) for v in data["box"])
        return cls(int(data["frame_number"]), (x0, y0, x1, y1), float(data["probability"]))


@dataclass(frozen=True)
class Finding:
    """The result for one instance (cine run or single image).

    ``frame_numbers`` are the 1-based keyframes that were classified and
    ``frame_probabilities`` their probabilities, in the same order.
    """

    probability: float
    threshold: float
    frame_numbers: list[int]
    frame_probabilities: list[float]
    tta_original: float
    tta_flipped: float
    regions: list[Region] = field(default_factory=list)

    @property
    def present(self) -> bool:
        """Stenosis present: the probability reaches the operating threshold."""
        return self.probability >= self.threshold
