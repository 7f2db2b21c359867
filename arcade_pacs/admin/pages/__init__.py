"""The dashboard: server-rendered pages under ``/ui/`` (Jinja2), live parts by htmx (vendored).

Hospital IT sees at a glance that the plugin is alive and what it did (home); cardiologists and
AI-governance staff see why a result came out as it did (study page: keyframes with the heat map
and the SR's regions, intensity histograms, TTA agreement, the opacification curve, probability
against threshold, model version and Device UID, the SR and where it went); anyone may try a
picture (upload); an operator retries deliveries, re-analyses and retrains (token-protected).

Pages render the same :mod:`arcade_pacs.admin.schemas` objects the API answers with
(:mod:`arcade_pacs.admin.views`); pictures are the API's own PNG endpoints, except on the
upload page, where nothing is stored and pictures are inlined. No file is fetched from the
internet: htmx, the script and the style sheet are served from ``/ui/static``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_PATH = "/ui/static"


def static_files() -> StaticFiles:
    """The vendored htmx, the dashboard's script and style sheet."""
    return StaticFiles(directory=str(HERE / "static"))


def _fmt_time(value) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _fmt_p(value) -> str:
    return "" if value is None else f"{value:.3f}"


def _fmt_bytes(n) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


TEMPLATES.env.filters["time"] = _fmt_time
TEMPLATES.env.filters["p"] = _fmt_p
TEMPLATES.env.filters["bytes"] = _fmt_bytes
