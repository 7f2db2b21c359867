"""A running plugin with one real study in it, for the browser tests and the screenshots.

modality (DCMTK storescu) -> `arcade-pacs serve` (shipped model) -> SR -> PACS (DCMTK storescp);
then headless Chromium (Debian's, driven by playwright) reads the dashboard.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pydicom

from tests.conftest import SHIPPED_MODEL
from tests.helpers import free_port, run, stop, tool, wait_for_port, wait_until
from tests.integration.conftest import start_plugin, write_config

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
    pacs_dir = tmp / "pacs"
    pacs_dir.mkdir(parents=True, exist_ok=True)
    pacs_port, scp_port, admin_port = free_port(), free_port(), free_port()
    pacs = subprocess.Popen([tool("storescp"), "-aet", "PACS", "-od", str(pacs_dir), "+B", str(pacs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    plugin = None
    try:
        wait_for_port(pacs_port, proc=pacs)
        config = write_config(tmp / "arcade.toml", {
            "scp": {"ae_title": "ARCADE", "host": "127.0.0.1", "port": scp_port, "allowed_calling_aets": ["STORESCU"]},
            "storage": {"root": str(tmp / "store"), "min_free_mb": 1},
            "database": {"url": f"sqlite:///{tmp / 'arcade.db'}"},
            "model": {"path": str(model)},
            "pipeline": {"study_quiet_seconds": 1},
            "admin": {"host": "127.0.0.1", "port": admin_port, "token": TOKEN},
            "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port}],
        })
        plugin = start_plugin(config, tmp / "plugin.log", scp_port, admin_port)
        base = f"http://127.0.0.1:{admin_port}"
        sent = run([tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(scp_port), str(cine)])
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(lambda: admin_json(base, "/status")["deliveries"]["sent"] >= 2, timeout=240,
                   message="SR and result image delivered to the PACS")
        study_uid = str(pydicom.dcmread(cine, stop_before_pixels=True).StudyInstanceUID)
        yield SimpleNamespace(base=base, study_uid=study_uid, scp_port=scp_port, admin_port=admin_port,
                              log=tmp / "plugin.log", pacs_dir=pacs_dir, cine=cine)
    finally:
        if plugin is not None:
            stop(plugin)
        stop(pacs)


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

