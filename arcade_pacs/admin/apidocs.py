"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from local files.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which a hospital network does not
reach (the page stayed blank). The files come from the ``fastapi-offline`` package (Swagger UI 5
and ReDoc 2, as published on npm) and are served under ``/docs/assets``; the pages are written
here without inline script, so the Content-Security-Policy of :mod:`arcade_pacs.admin.guard`
holds (Swagger UI is started by ``/ui/static/api-docs.js``).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"
ASSETS = Path(fastapi_offline.__file__).parent / "static"

router = APIRouter(include_in_schema=False)

_HEAD = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>ARCADE PACS admin API</title>
  <link rel="icon" href="{assets}/favicon.png">
"""

SWAGGER_PAGE = _HEAD.format(assets=ASSETS_PATH) + f"""  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="/ui/static/api-docs.js"></script>
</body>
</html>
"""

REDOC_PAGE = _HEAD.format(assets=ASSETS_PATH) + f"""</head>
<body>
  <redoc spec-url="/openapi.json"></redoc>
  <script src="{ASSETS_PATH}/redoc.standalone.js"></script>
</body>
</html>
"""


def assets() -> StaticFiles:
    """Swagger UI's and ReDoc's files, as the ``fastapi-offline`` package ships them."""
    return StaticFiles(directory=str(ASSETS))


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER_PAGE)


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE)
