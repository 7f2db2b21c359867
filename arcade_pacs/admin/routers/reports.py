"""The SRs the plugin wrote: download one, or read it rendered as text."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from arcade_pacs.admin.deps import AdminState, Uid, get_session, get_state, require_reader
from arcade_pacs.db.tables import Report
from arcade_pacs.report.text import render_sr_text

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
