"""The result images and presentation states of one version of a study's result.

Beside the SR (:mod:`arcade_pacs.report.sr`), each analysed run gets a result image
(:mod:`arcade_pacs.report.result_image`) and a presentation state on its frames
(:mod:`arcade_pacs.report.presentation`); each run that could not be analysed gets a result image
that says so and why. Runs are taken in the SR's order and named as the SR names them, so
"Run series 1 image 1" is the same run everywhere.

A newer version keeps each kind's series and takes the next instance numbers, so a viewer
lists the versions in order, and its images and presentation states say which version they
are (Image Comments, Content Description); the outbox sends them and supersedes the unsent
objects of the version they replace, all kinds together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.uid import generate_uid

from arcade_pacs.core.phi import describe
from arcade_pacs.report import presentation, result_image
from arcade_pacs.report.drawing import LoadedRun, load_keyframes
from arcade_pacs.report.identity import NOTICE, ModelIdentity
from arcade_pacs.report.marks import shown_frames
from arcade_pacs.report.sr import FailedRun, InstanceResult, failed_reason, run_label
from arcade_pacs.settings import ObjectKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Numbering:
    """Where a version's objects of one kind go: their series, and the instance number to start at."""

    series_instance_uid: str
    first_instance_number: int


@dataclass(frozen=True)
class Built:
    """One object made for a run: its kind, the dataset (to be written) and the run's database row."""

    kind: ObjectKind
    dataset: Dataset
    instance_id: int | None


def _load(result: InstanceResult) -> tuple[LoadedRun | None, str | None]:
    """The frames a result image shows, through the analysis pipeline; ``(None, why)`` when unreadable."""
    if result.path is None:
        return None, "the stored file is not known"
    try:
        return load_keyframes(result.path, shown_frames(result.finding)), None
    except Exception as exc:  # deleted by retention, or unreadable: the image says so instead
        return None, describe(exc)


def _comments(label: str, outcome: str, version: int) -> str:
    replaces = f"; it replaces the objects of version {version - 1}" if version > 1 else ""
    return (f"ARCADE stenosis AI result for {label}: {outcome}. Version {version} of this study's result"
            f"{replaces}. {NOTICE}.")


def build_objects(
    results: list[InstanceResult],
    failed: list[FailedRun],
    *,
    model: ModelIdentity,
    images: Numbering,
    states: Numbering,
    version: int,
) -> list[Built]:
    """The result images of every run and the presentation states of every analysed run.

    ``model`` is the study's model (named for runs that could not be analysed); an analysed
    run names its own. A run whose frames cannot be read again (retention deleted them) gets a
    result image with its caption alone and no presentation state (its grey levels are unknown).
    """
    built: list[Built] = []
    n_images = n_states = 0
    for index, result in enumerate(results, start=1):
        try:
            made = _analysed(result, run_label(result.source, index), result.model or model, images.series_instance_uid,
                             images.first_instance_number + n_images, states.series_instance_uid,
                             states.first_instance_number + n_states, version)
        except Exception as exc:  # a result image must never hold the SR back
            log.warning("run id=%s: result image or presentation state not made (%s)", result.instance_id, describe(exc))
            continue
        built += made
        n_images += sum(b.kind is ObjectKind.SC for b in made)
        n_states += sum(b.kind is ObjectKind.GSPS for b in made)
    for index, run in enumerate(failed, start=len(results) + 1):
        label = run_label(run.source, index)
        reason = failed_reason(run)
        why = " ".join(run.reason.split())
        try:
            pixels = result_image.compose([], result_image.failed_caption(why, label, model))
            image = result_image.build_result_image(
                run.source, pixels, [], model=model, series_instance_uid=images.series_instance_uid,
                sop_instance_uid=generate_uid(), instance_number=images.first_instance_number + n_images,
                derivation=result_image.derivation_of([]), comments=_comments(label, reason, version))
        except Exception as exc:
            log.warning("run id=%s: result image not made (%s)", run.instance_id, describe(exc))
            continue
        built.append(Built(ObjectKind.SC, image, run.instance_id))
        n_images += 1
    return built


def _analysed(result: InstanceResult, label: str, own: ModelIdentity, image_series: str, image_number: int,
              state_series: str, state_number: int, version: int) -> list[Built]:
    """The result image and (when its frames can be read) the presentation state of one analysed run."""
    finding = result.finding
    loaded, unreadable = _load(result)
    if loaded is None:
        log.warning("run id=%s: keyframes unreadable for its result image (%s)", result.instance_id, unreadable)
    pixels, frames = result_image.analysed_pixels(finding, loaded, result.window_scores, label, own, unreadable)
    outcome = (f"stenosis {'present' if finding.present else 'absent'}, probability {finding.probability:.2f} "
               f"(threshold {finding.threshold:.2f})")
    made = [Built(ObjectKind.SC, result_image.build_result_image(
        result.source, pixels, frames, model=own, series_instance_uid=image_series, sop_instance_uid=generate_uid(),
        instance_number=image_number, derivation=result_image.derivation_of(frames),
        comments=_comments(label, outcome, version),
    ), result.instance_id)]
    if loaded is not None:
        made.append(Built(ObjectKind.GSPS, presentation.build_presentation_state(
            result.source, finding, loaded.voi, model=own, series_instance_uid=state_series,
            sop_instance_uid=generate_uid(), instance_number=state_number,
        ), result.instance_id))
    return made
