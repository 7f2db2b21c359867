"""The objects the plugin wrote: download an SR, result image or presentation state, read an SR as
text, see a result image as PNG."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from arcade_pacs.admin.deps import AdminState, Uid, get_session, get_state, require_reader
from arcade_pacs.db.tables import Report, ResultObject
from arcade_pacs.report.text import render_sr_text, result_image_png
from arcade_pacs.settings import ObjectKind

router = APIRouter(tags=["reports"], dependencies=[Depends(require_reader)])


def stored_report(sop_uid: str, s: Session) -> Report:
    report = s.scalar(select(Report).where(Report.sop_instance_uid == sop_uid))
    if report is None or not os.path.isfile(report.path):
        raise HTTPException(404, "no such SR")
    return report


@router.get("/reports/{sop_uid}.dcm", response_class=FileResponse,
            responses={200: {"content": {"application/dicom": {}}}})
def download_sr(sop_uid: Uid, s: Session = Depends(get_session)):
    """The SR as written and sent (DICOM Part 10, ``application/dicom``, PS3.18 8.7.3.5)."""
    report = stored_report(sop_uid, s)
    return FileResponse(report.path, media_type="application/dicom", filename=f"{sop_uid}.dcm")


@router.get("/reports/{sop_uid}.txt", response_class=PlainTextResponse)
async def sr_text(sop_uid: Uid, state: AdminState = Depends(get_state), s: Session = Depends(get_session)):
    """The SR's content tree as text (DCMTK ``dsrdump``, else the plugin's own rendering)."""
    report = stored_report(sop_uid, s)
    text, renderer = await run_in_threadpool(
        render_sr_text, report.path, document_header=state.settings.admin.show_patient_identity)
    return PlainTextResponse(text, headers={"X-Rendered-By": renderer})


def stored_object(sop_uid: str, s: Session) -> ResultObject:
    found = s.scalar(select(ResultObject).where(ResultObject.sop_instance_uid == sop_uid))
    if found is None or not os.path.isfile(found.path):
        raise HTTPException(404, "no such object")
    return found


@router.get("/objects/{sop_uid}.dcm", response_class=FileResponse,
            responses={200: {"content": {"application/dicom": {}}}})
def download_object(sop_uid: str, s: Session = Depends(get_session)):
    """Any object the plugin wrote (SR, result image, presentation state) as written and sent
    (DICOM Part 10, ``application/dicom``)."""
    found = stored_object(sop_uid, s)
    return FileResponse(found.path, media_type="application/dicom", filename=f"{sop_uid}.dcm")


@router.get("/objects/{sop_uid}.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def result_image_picture(sop_uid: str, s: Session = Depends(get_session)):
    """A result image's pixels as PNG, exactly as sent (404 for other kinds of object)."""
    found = stored_object(sop_uid, s)
    if found.kind != ObjectKind.SC.value:
        raise HTTPException(404, "only result images (sc) have a picture")
    png = await run_in_threadpool(result_image_png, found.path)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})
