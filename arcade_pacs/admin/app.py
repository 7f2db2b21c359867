"""The admin HTTP API (FastAPI) and its dashboard (``/ui/``).

API: health and readiness, status, studies, results and their pictures, SRs, jobs, deliveries,
the association audit, metrics, ``/predict``, ``/retrain``; STOW-RS (``/dicom-web/studies``) where
the process runs the SCP.

The app factory receives the running service's resources explicitly (:class:`AdminState`);
nothing is created per request. Each resource has its router (``routers/``), the dependencies
they share live in :mod:`arcade_pacs.admin.deps`, and the bodies they answer with in
:mod:`arcade_pacs.admin.schemas`. Every response passes :class:`arcade_pacs.admin.guard.Guard`
(trusted hosts, same-origin writes, security headers); the API's documentation is served from
local files (:mod:`arcade_pacs.admin.apidocs`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError

from arcade_pacs import __version__
from arcade_pacs.admin import apidocs
from arcade_pacs.admin.collector import register_database
from arcade_pacs.admin.deps import RESEARCH_NOTICE, AdminState
from arcade_pacs.admin.guard import Guard, trusted_hosts
from arcade_pacs.admin.limits import BodyLimit
from arcade_pacs.admin.pages import STATIC_PATH, static_files
from arcade_pacs.admin.pages import routes as pages
from arcade_pacs.admin.routers import (
    associations,
    deliveries,
    dicomweb,
    health,
    jobs,
    predict,
    reports,
    results,
    retrain,
    studies,
)

__all__ = ["AdminState", "create_app"]

DICOMWEB_PREFIX = "/dicom-web/"
ROUTERS = (health, studies, results, reports, associations, jobs, deliveries, predict, retrain)
PROBE_ROUTERS = (health,)


def create_app(state: AdminState, full: bool = True) -> FastAPI:
    """Build the admin app for a running service (``full=False``: health, status and metrics only,
    what ``scp`` and ``worker`` processes serve for their probes)."""
    register_database(state.sessions)
    app = FastAPI(
        title="ARCADE PACS admin",
        version=__version__,
        description=f"Coronary stenosis detection PACS plugin. {RESEARCH_NOTICE}",
        docs_url=None,
        redoc_url=None,
    )
    app.state.admin = state
    # Bodies past /predict's limit are refused while they arrive (a little room for the form's framing).
    # STOW-RS bodies have their own bound (dicomweb.max_request_bytes), counted as they are read.
    app.add_middleware(BodyLimit, max_bytes=int(state.settings.admin.predict_max_mb * 1024 * 1024) + 64 * 1024,
                       exempt=(DICOMWEB_PREFIX,))
    # Outermost, so that every answer (a 413 of BodyLimit too) carries the security headers.
    app.add_middleware(Guard, allowed_hosts=trusted_hosts(state.settings))
    for module in ROUTERS if full else PROBE_ROUTERS:
        app.include_router(module.router)
    if state.stow is not None:  # a process that runs the SCP receives by STOW-RS too
        app.include_router(dicomweb.router)
    if full:
        app.include_router(pages.pages)
        app.include_router(pages.router)
        app.mount(STATIC_PATH, static_files(), name="static")
        app.include_router(apidocs.router)
        app.mount(apidocs.ASSETS_PATH, apidocs.assets(), name="api-docs-assets")
        app.add_exception_handler(RequestValidationError, invalid_request)
    return app


async def invalid_request(request: Request, exc: RequestValidationError):
    """A dashboard page with an invalid parameter answers with a page (422); the API with JSON."""
    if not request.url.path.startswith("/ui/"):
        return await request_validation_exception_handler(request, exc)
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                        for e in exc.errors())
    return pages.render(request, "error.html", status_code=422, title="Invalid request",
                        message=f"Invalid request ({message[:300]}).")
