"""A running plugin with one real study in it, for the browser tests and the screenshots.

modality (DCMTK storescu) -> `arcade-pacs serve` (shipped model) -> SR -> PACS (DCMTK storescp);
then headless Chromium (Debian's, driven by playwright) reads the dashboard.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pydicom

from arcade_pacs.bench import peers
from tests.project import SHIPPED_MODEL

TOKEN = "dashboard-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def admin_json(base: str, path: str) -> dict:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}",
                                                           "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@contextlib.contextmanager
def plugin_with_a_study(tmp: Path, cine: Path, model: Path = SHIPPED_MODEL):
    """Start a PACS and the plugin (admin token set), send ``cine``, wait until its SR and result image
    are delivered (the default kinds)."""
    scp_port, admin_port = peers.free_port(), peers.free_port()
    with peers.StoreSCP(tmp / "pacs", notify=False, bit_preserving=True) as pacs:
        config = peers.write_config(tmp / "arcade.toml", peers.loopback_config(
            tmp, scp_port, admin_port, model, [peers.dimse_destination(pacs.port)],
            storage={"min_free_mb": 1}, admin={"token": TOKEN}))
        with peers.Plugin.start(config, tmp / "plugin.log", scp_port, admin_port):
            base = f"http://127.0.0.1:{admin_port}"
            sent = peers.storescu(scp_port, cine, options=["-xy"])
            assert sent.returncode == 0, sent.stdout + sent.stderr
            peers.wait_until(lambda: admin_json(base, "/status")["deliveries"]["sent"] >= 2, timeout=240,
                       message="SR and result image delivered to the PACS")
            study_uid = str(pydicom.dcmread(cine, stop_before_pixels=True).StudyInstanceUID)
            yield SimpleNamespace(base=base, study_uid=study_uid, scp_port=scp_port, admin_port=admin_port,
                                  log=tmp / "plugin.log", pacs_dir=pacs.folder, cine=cine)


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, driven by playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page, base: str) -> None:
    """The dashboard's login form (it opens a reading session, kept in a cookie)."""
    page.goto(base + "/ui/")
    assert page.url.endswith("/ui/login"), page.url
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/ui/")


def png_of(cine: Path, frame: int, out: Path) -> Path:
    """One frame of the cine as an 8-bit PNG (what a user might upload)."""
    from PIL import Image

    from tests.factory import real_frame

    Image.fromarray(real_frame(cine, frame)).save(out)
    return out

