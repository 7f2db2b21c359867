"""The SR as a radiologist sees it: OHIF Viewer v3 opens it, draws it, and tracks it.

modality (DCMTK storescu) -> `arcade-pacs serve` -> SR -> Orthanc (DICOMweb plugin) ->
OHIF Viewer (the npm-packed prebuilt app, served same-origin with Orthanc's DICOMweb) in
Debian's chromium, driven by Python playwright.

Two studies go through one plugin and one Orthanc:

- the Rubo cine (a positive run with regions on several keyframes);
- a study of two runs made from it, the second with its last JPEG frame cut short: the SCP
  accepts it (nothing at receipt can see it), its analysis fails, and the SR says so.

For each, the test opens the SR in OHIF and checks: no page error and no console error; the
viewport is not blank; OHIF's SR display set holds the expected regions on the expected
instance and frames; after "continue tracking measurements? Yes" the measurement service and
the measurement panel list them (and the run that could not be analysed, with its reason).

``pytest tests/integration/test_ohif.py --screenshots docs/`` also saves the pictures shown
in the README.
"""

from __future__ import annotations

import copy
import io
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from arcade_pacs.bench import peers
from arcade_pacs.core.findings import Region
from arcade_pacs.db.tables import Instance
from arcade_pacs.report import presentation, result_image
from arcade_pacs.report.identity import NOTICE
from arcade_pacs.report.sr import MAX_REGIONS_PER_INSTANCE, SERIES_DESCRIPTION, STUDY_SUMMARY, region_comment
from tests.integration.ohif import CHROMIUM_ARGS, OhifServer, Viewer, chromium, ohif_bundle, pixel_spread
from tests.project import SHIPPED_MODEL

pytestmark = [pytest.mark.network, pytest.mark.slow]

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
MIN_SPREAD = 40.0  # grey levels between the 1st and 99th percentile; a blank viewport has ~0


@dataclass
class Run:
    path: Path
    sop_uid: str
    series_number: int


@dataclass
class Env:
    viewer_url: str
    browser: object
    studies: dict[str, list[Run]]  # name -> runs (study UID in .study_uid)
    study_uids: dict[str, str]
    database_url: str
    pacs: peers.Orthanc


def _undecodable_last_frame(ds: pydicom.Dataset) -> None:
    """Cut the last JPEG frame short: it still parses, so receipt accepts it; decoding fails."""
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    frames[-1] = frames[-1][:64]
    ds.PixelData = encapsulate(frames)


def _copy(source: pydicom.Dataset, folder: Path, name: str, study_uid: str, series_number: int,
          broken: bool = False) -> Run:
    ds = copy.deepcopy(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesNumber, ds.InstanceNumber = series_number, 1
    if broken:
        _undecodable_last_frame(ds)
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return Run(path, ds.SOPInstanceUID, series_number)


def _send(path: Path, port: int, aec: str) -> None:
    sent = peers.run([peers.tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), str(path)])
    assert sent.returncode == 0, sent.stdout + sent.stderr


@pytest.fixture(scope="module")
def env(tmp_path_factory, request, rubo):
    from playwright.sync_api import sync_playwright

    dist = ohif_bundle(request.config.getoption("--ohif-cache"))  # downloaded once, then cached
    tmp = tmp_path_factory.mktemp("ohif")
    source = pydicom.dcmread(rubo)
    several = generate_uid()
    studies = {
        "cine": [Run(rubo, source.SOPInstanceUID, int(source.get("SeriesNumber") or 0))],
        "with_failed_run": [_copy(source, tmp, "good.dcm", several, 1),
                            _copy(source, tmp, "broken.dcm", several, 2, broken=True)],
    }
    study_uids = {"cine": source.StudyInstanceUID, "with_failed_run": several}

    scp_port, admin_port = peers.free_port(), peers.free_port()
    with peers.Orthanc(tmp / "orthanc", modalities={"arcade": ["ARCADE", "127.0.0.1", scp_port]}, dicomweb=True) as pacs:
        config = peers.write_config(tmp / "arcade.toml", peers.loopback_config(
            tmp, scp_port, admin_port, SHIPPED_MODEL, [peers.dimse_destination(pacs.dicom_port, objects=["sr", "sc", "gsps"])],
            ["STORESCU", "PACS"]))
        with peers.Plugin.start(config, tmp / "plugin.log", scp_port, admin_port):
            for runs in studies.values():
                for r in runs:
                    _send(r.path, pacs.dicom_port, "PACS")  # the PACS has the images...
                    _send(r.path, scp_port, "ARCADE")  # ...and the plugin analyses them
            peers.wait_until(lambda: len(pacs.instances_of_class(COMPREHENSIVE_3D_SR)) == len(studies),
                       timeout=420, interval=2, message="an SR per study in Orthanc")
            runs = sum(len(r) for r in studies.values())
            peers.wait_until(lambda: len(pacs.instances_of_class(SECONDARY_CAPTURE)) == runs
                       and len(pacs.instances_of_class(GSPS)) == runs - 1,  # the broken run has no marks
                       timeout=240, interval=2, message="a result image per run, a presentation state per analysed run")
        with OhifServer(dist, pacs.http_port) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            try:
                yield Env(server.url, browser, studies, study_uids, f"sqlite:///{tmp / 'arcade.db'}", pacs)
            finally:
                browser.close()
            assert not server.errors, server.errors


@pytest.fixture
def viewer(env):
    context = env.browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield Viewer(page, env.viewer_url)
    context.close()


def _stored(env: Env, sop_uid: str) -> Instance:
    with Session(create_engine(env.database_url)) as s:
        instance = s.scalars(select(Instance).where(Instance.sop_instance_uid == sop_uid)).one()
        instance.job, instance.result  # noqa: B018 - load before the session closes
        if instance.result is not None:
            instance.result.frames  # noqa: B018
        s.expunge_all()
        return instance


def _expected_regions(instance: Instance) -> list[Region]:
    """The plugin's own result for the run: what the SR must draw (strongest first, capped)."""
    finding = instance.result.finding
    assert finding.present, "the test needs a positive run"
    regions = sorted(finding.regions, key=lambda r: -r.probability)[:MAX_REGIONS_PER_INSTANCE]
    assert len({r.frame_number for r in regions}) >= 2, "the test needs regions on several frames"
    return regions


def _check_sr_in_ohif(viewer: Viewer, env: Env, name: str, screenshots: Path | None) -> dict:
    runs = env.studies[name]
    viewer.open_study(env.study_uids[name], n_display_sets=len(runs) + 1)
    assert viewer.page.evaluate("() => window.crossOriginIsolated"), "COOP/COEP headers missing"
    state = viewer.open_sr(SERIES_DESCRIPTION[:20])
    assert state["sr"]["loaded"], state
    spread = pixel_spread(viewer.viewport_png())
    assert spread >= MIN_SPREAD, f"the viewport is blank (spread {spread:.0f})"
    if screenshots and name == "cine":
        viewer.screenshot(screenshots / "ohif_cine_sr.png")
    return state


def test_the_sr_of_a_cine_opens_in_ohif_with_its_regions_on_their_frames(env, viewer, request):
    screenshots = request.config.getoption("--screenshots")
    (cine,) = env.studies["cine"]
    expected = _expected_regions(_stored(env, cine.sop_uid))
    state = _check_sr_in_ohif(viewer, env, "cine", screenshots)

    drawn = {m["tracking"]: m for m in state["sr"]["measurements"]}
    assert all(m["loaded"] for m in drawn.values()), drawn  # each placed on an image of the study
    regions = [m for t, m in drawn.items() if " region " in t]
    assert len(drawn) == len(state["sr"]["measurements"]), "each measurement has its own tracking identifier"
    assert sorted((m["sop"], m["frame"]) for m in regions) == sorted((cine.sop_uid, r.frame_number) for r in expected)
    assert sorted(m["tracking"].split(f"frame {m['frame']} region ")[1] for m in regions) == sorted(
        str(rank) for rank in range(1, len(expected) + 1))  # frame and rank, strongest first
    labels = {(m["frame"], tuple(lab)) for m in regions for lab in m["labels"]}
    for r in expected:
        assert (r.frame_number, ("Probability", f"{r.probability:.2f} 1")) in labels
    summary = drawn[STUDY_SUMMARY]
    assert summary["sop"] == cine.sop_uid
    assert summary["frame"] in {r.frame_number for r in expected} | {None}

    state = viewer.track(len(expected))
    tracked = [m for m in state["tracked"] if m["tool"] == "RectangleROI"]
    assert sorted((m["sop"], m["frame"]) for m in tracked) == sorted((cine.sop_uid, r.frame_number) for r in expected)
    assert sorted(m["label"] for m in tracked) == sorted(region_comment(r) for r in expected)
    rows = viewer.panel_rows(len(expected))
    assert len(rows) == len(expected)
    for r in expected:
        assert any(region_comment(r) in " ".join(row.split()) and f"F: {r.frame_number}" in row for row in rows), rows
    viewer.go_to_row(0)
    assert pixel_spread(viewer.viewport_png()) >= MIN_SPREAD
    if screenshots:
        viewer.screenshot(screenshots / "ohif_cine_tracked.png")
    assert not viewer.errors, "\n".join(viewer.errors)


def test_a_study_with_a_run_that_could_not_be_analysed_opens_in_ohif(env, viewer, request):
    screenshots = request.config.getoption("--screenshots")
    good, broken = env.studies["with_failed_run"]
    failed = _stored(env, broken.sop_uid)
    assert failed.job.state == "failed", failed.job.last_error
    assert failed.result is None, failed.job.last_error
    expected = _expected_regions(_stored(env, good.sop_uid))
    state = _check_sr_in_ohif(viewer, env, "with_failed_run", screenshots)

    drawn = {m["tracking"]: m for m in state["sr"]["measurements"]}
    assert all(m["loaded"] for m in drawn.values()), drawn
    (not_analysed,) = [m for t, m in drawn.items() if t.endswith("not analysed")]
    assert (not_analysed["sop"], not_analysed["frame"]) == (broken.sop_uid, 1)
    reason = " ".join(failed.job.last_error.split())
    summary_labels = [lab[0] for lab in drawn[STUDY_SUMMARY]["labels"]]
    assert "incompletely assessed: 1 of 2 runs not analysed" in summary_labels
    regions = [m for t, m in drawn.items() if " region " in t]
    assert sorted((m["sop"], m["frame"]) for m in regions) == sorted((good.sop_uid, r.frame_number) for r in expected)

    state = viewer.track(len(expected) + 1)
    tracked = {m["label"]: m for m in state["tracked"]}
    failed_label = f"not analysed: {reason}"[:1024]
    assert (tracked[failed_label]["sop"], tracked[failed_label]["frame"]) == (broken.sop_uid, 1)
    rows = viewer.panel_rows(len(expected) + 1)
    (failed_row,) = [i for i, row in enumerate(rows) if "not analysed" in row]
    assert "F: 1" in rows[failed_row], rows
    viewer.go_to_row(failed_row)  # OHIF shows the run that could not be analysed, labelled with why
    assert pixel_spread(viewer.viewport_png()) >= MIN_SPREAD
    if screenshots:
        viewer.screenshot(screenshots / "ohif_with_failed_run_tracked.png")
    assert not viewer.errors, "\n".join(viewer.errors)


def test_one_origin_serves_the_app_and_orthanc_dicomweb_with_isolation_headers(env):
    for path in ("/", "/viewer?StudyInstanceUIDs=1.2.3", "/app-config.js", f"/dicom-web/studies/{env.study_uids['cine']}/series"):
        with urllib.request.urlopen(env.viewer_url + path, timeout=30) as answer:
            assert answer.status == 200, path
            assert answer.headers["Cross-Origin-Opener-Policy"] == "same-origin", path
            assert answer.headers["Cross-Origin-Embedder-Policy"] == "require-corp", path
            body = answer.read()
        if path.startswith("/dicom-web"):
            modalities = {s["00080060"]["Value"][0] for s in json.loads(body)}
            assert modalities == {"XA", "SR", "OT", "PR"}  # the run, the SR, the result image, the marks
        elif path == "/app-config.js":
            assert f"qidoRoot: '{env.viewer_url}/dicom-web'".encode() in body
        else:
            assert b"<title>OHIF Viewer</title>" in body


def test_the_stored_sr_is_in_the_source_study(env):
    """Orthanc filed each SR, result image and presentation state under its source study (what OHIF's
    study browser lists it by)."""
    for sop_class in (SECONDARY_CAPTURE, GSPS):
        for tags in env.pacs.instances_of_class(sop_class):
            assert tags["StudyInstanceUID"] in env.study_uids.values()
            sources = env.pacs.post("/tools/find", {"Level": "Study",
                                                    "Query": {"StudyInstanceUID": tags["StudyInstanceUID"]}})
            assert sources == [tags["_parent_study"]]
    for sr_tags in env.pacs.instances_of_class(COMPREHENSIVE_3D_SR):
        assert sr_tags["StudyInstanceUID"] in env.study_uids.values()
        sr = pydicom.dcmread(io.BytesIO(env.pacs.file(sr_tags["_id"])))
        partial = sr.StudyInstanceUID == env.study_uids["with_failed_run"]
        assert sr.CompletionFlag == ("PARTIAL" if partial else "COMPLETE")


def _ocr(png: bytes) -> str:
    """What tesseract (Debian's tesseract-ocr) reads in a screenshot, on one line (read at twice the
    screen's size, in grey: tesseract reads small screen text better so, as a person leans closer)."""
    import subprocess

    from PIL import Image

    shot = Image.open(io.BytesIO(png)).convert("L")
    buffer = io.BytesIO()
    shot.resize((shot.width * 2, shot.height * 2), Image.Resampling.LANCZOS).save(buffer, format="PNG")
    done = subprocess.run([peers.tool("tesseract"), "-", "-"], input=buffer.getvalue(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.decode(errors="replace").split())


def test_the_result_image_opens_in_ohif_as_its_own_series_with_a_legible_caption(env, viewer, request):
    screenshots = request.config.getoption("--screenshots")
    (cine,) = env.studies["cine"]
    viewer.open_study(env.study_uids["cine"], n_display_sets=3)  # the run, the SR, the result image
    sets = viewer.display_sets()
    shown = viewer.open_series(result_image.SERIES_DESCRIPTION[:25])
    assert shown["modality"] == "OT"
    assert shown["images"] == 1
    runs = [d for d in sets if d["modality"] == "XA"]
    assert len(runs) == 1
    assert shown["series"] != runs[0]["series"]  # its own series in the source study
    png = viewer.viewport_png()
    assert pixel_spread(png) >= MIN_SPREAD, "the result image is blank in OHIF"
    if screenshots:
        viewer.screenshot(screenshots / "ohif_result_image.png")
    text = _ocr(png)
    assert NOTICE in text, text
    assert "STENOSIS" in text, text  # the caption as OHIF shows it is legible
    # OHIF 3.13.2 has no presentation-state support: it lists the GSPS series as not supported
    # (its "not supported" display-set handler) and nothing breaks.
    (marks,) = [d for d in sets if d["modality"] == "PR"]
    assert marks["description"] == presentation.SERIES_DESCRIPTION
    assert "unsupported" in marks["handler"], marks  # OHIF names the handler of such series "unsupported"
    assert not viewer.errors, "\n".join(viewer.errors)
