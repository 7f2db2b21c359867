"""OHIF Viewer v3, as a radiologist would open the plugin's SR: the real prebuilt web app.

- :func:`ohif_bundle` packs ``@ohif/app`` (pinned :data:`OHIF_VERSION`) from the npm registry
  with ``npm pack`` and unpacks its prebuilt ``dist/`` once into a cache folder (default
  ``var/cache/ohif/`` of the repository, ignored by git; CI starts from a clean clone and
  downloads it there).
- :class:`OhifServer` serves that bundle with an ``app-config.js`` of its own and proxies
  ``/dicom-web`` (QIDO-RS/WADO-RS) and ``/wado`` (WADO-URI) to an Orthanc with the DICOMweb
  plugin, so the viewer and the archive share one origin (no CORS). Every answer carries the
  cross-origin isolation headers (COOP/COEP) that OHIF's WebAssembly decoders and
  SharedArrayBuffer need.
- :class:`Viewer` drives Debian's ``chromium`` with Python playwright: open a study, open its
  SR, read OHIF's measurement service, accept "track measurements", read the measurement panel.
"""

from __future__ import annotations

import http.client
import mimetypes
import shutil
import subprocess
import tarfile
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OHIF_VERSION = "3.13.2"
"""The OHIF release under test: ``@ohif/app`` on npm ships its prebuilt viewer in ``dist/``."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PROXIED = ("/dicom-web", "/wado")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


def ohif_bundle(cache_dir: Path, version: str = OHIF_VERSION) -> Path:
    """The unpacked ``dist/`` of ``@ohif/app@version``, downloaded with ``npm pack`` when absent.

    The folder appears by one rename once complete, so an interrupted download never leaves a
    half bundle that a later run would take for a cached one.
    """
    cache_dir = Path(cache_dir)
    dist = cache_dir / f"ohif-app-{version}" / "dist"
    if (dist / "index.html").is_file():
        return dist
    cache_dir.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: run `make test` (Debian package npm)")
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        packed = subprocess.run(
            [npm, "pack", f"@ohif/app@{version}", "--pack-destination", tmp, "--silent"],
            capture_output=True, text=True, timeout=600, cwd=tmp,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack @ohif/app@{version} failed:\n{packed.stderr[-2000:]}")
        (tarball,) = Path(tmp).glob("*.tgz")
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
            tar.extractall(unpacked, members=members, filter="data")
        if not (unpacked / "package" / "dist" / "index.html").is_file():
            raise RuntimeError(f"@ohif/app@{version} has no prebuilt dist/index.html")
        dist.parent.mkdir(parents=True, exist_ok=True)
        try:
            (unpacked / "package" / "dist").rename(dist)
        except OSError:  # another run unpacked it meanwhile: use theirs
            if not (dist / "index.html").is_file():
                raise
    return dist


def app_config(origin: str) -> str:
    """OHIF's ``window.config``: one DICOMweb data source, the local proxy (same origin).

    ``bulkDataURI`` makes OHIF fetch the SR's and images' bulk data through the URIs that
    Orthanc's metadata gives; ``omitQuotationForMultipartRequest`` because Orthanc's WADO-RS
    rejects a quoted ``type`` parameter in ``Accept``.
    """
    return f"""window.config = {{
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {{}},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  investigationalUseDialog: {{ option: 'never' }},
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {{
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {{
        friendlyName: 'Orthanc (test)',
        name: 'orthanc',
        wadoUriRoot: '{origin}/wado',
        qidoRoot: '{origin}/dicom-web',
        wadoRoot: '{origin}/dicom-web',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: {{ enabled: true }},
      }},
    }},
  ],
}};
"""


class OhifServer:
    """The OHIF bundle and a same-origin proxy to Orthanc's DICOMweb, on a loopback port."""

    def __init__(self, dist: Path, orthanc_http_port: int):
        self.dist = Path(dist)
        self.orthanc_http_port = orthanc_http_port
        self.httpd: ThreadingHTTPServer | None = None
        self.errors: list[str] = []  # proxy failures, reported by the test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> OhifServer:
        server = self
        dist = self.dist.resolve()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the test reports what matters
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for key, value in ISOLATION_HEADERS.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _proxy(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn = http.client.HTTPConnection("127.0.0.1", server.orthanc_http_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                except OSError as exc:
                    server.errors.append(f"{self.command} {self.path}: {exc}")
                    self._send(502, str(exc).encode(), "text/plain")
                    return
                finally:
                    conn.close()
                if answer.status >= 500:
                    server.errors.append(f"{self.command} {self.path}: Orthanc answered {answer.status}")
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                for key, value in ISOLATION_HEADERS.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _static(self) -> None:
                path = self.path.split("?", 1)[0].split("#", 1)[0]
                if path == "/app-config.js":
                    self._send(200, app_config(server.url).encode(), "text/javascript")
                    return
                target = (dist / path.lstrip("/")).resolve()
                if not target.is_relative_to(dist) or not target.is_file():
                    target = dist / "index.html"  # the single-page app routes everything else
                kind = "application/wasm" if target.suffix == ".wasm" else mimetypes.guess_type(target.name)[0]
                if target.suffix in (".js", ".mjs"):
                    kind = "text/javascript"
                self._send(200, target.read_bytes(), kind or "application/octet-stream")

            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.startswith(PROXIED):
                    self._proxy()
                else:
                    self._static()

            do_HEAD = do_GET  # noqa: N815

            def do_POST(self):  # noqa: N802
                if self.path.startswith(PROXIED):
                    self._proxy()
                else:
                    self._send(405, b"", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium() -> str:
    """Debian's chromium (never a browser that playwright downloads); fail if absent."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError("chromium is not installed: run `make test` (Debian package chromium)")
    return CHROMIUM



SR_STATE_JS = """() => {
  const s = window.services;
  const sr = s.displaySetService.getActiveDisplaySets().find(d => d.Modality === 'SR');
  return {
    sr: sr ? {loaded: sr.isLoaded === true, hydrated: sr.isHydrated === true,
              measurements: (sr.measurements || []).map(m => ({
                tracking: m.TrackingIdentifier, loaded: m.loaded === true,
                sop: m.ReferencedSOPInstanceUID || null, frame: m.frameNumber || null,
                labels: (m.labels || []).map(l => [String(l.label), String(l.value)])}))} : null,
    tracked: s.measurementService.getMeasurements().map(m => ({
      label: m.label || null, tool: m.toolName, frame: m.frameNumber || null,
      sop: m.SOPInstanceUID || null})),
  };
}"""
"""OHIF's own view of the SR: the SR display set's measurements (what it draws) and the
measurement service's (what "track measurements" imported). ``window.services`` is OHIF's
services manager, which the app exposes on ``window``."""

BROKEN_PAGE_MARKERS = ("Error Boundary", "Something went wrong")
DISPLAY_SETS_JS = """() => window.services.displaySetService.getActiveDisplaySets().map(d => ({
  uid: d.displaySetInstanceUID, modality: d.Modality, series: d.SeriesInstanceUID,
  description: d.SeriesDescription || '', images: (d.images || d.instances || []).length,
  handler: d.SOPClassHandlerId || null,
  sopClass: d.SOPClassUID || (d.instance && d.instance.SOPClassUID) || null}))"""
SHOWN_JS = """uid => {
  const st = window.services.viewportGridService.getState();
  const vps = st.viewports instanceof Map ? [...st.viewports.values()] : Object.values(st.viewports || {});
  return vps.some(v => (v.displaySetInstanceUIDs || []).includes(uid));
}"""
"""What OHIF logs when a React error boundary caught an exception (the page shows an error)."""


class Viewer:
    """One Chromium page on OHIF, collecting every page error and console error it shows."""

    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        text = message.text
        if message.type == "error" or any(marker in text for marker in BROKEN_PAGE_MARKERS):
            self.errors.append(f"console {message.type}: {text[:500]}")

    def open_study(self, study_uid: str, n_display_sets: int, timeout_ms: int = 120_000) -> None:
        """Open the viewer on a study and wait until OHIF has all its display sets (SR included)."""
        self.page.goto(f"{self.base_url}/viewer?StudyInstanceUIDs={study_uid}")
        self.page.wait_for_function(
            "n => window.services && window.services.displaySetService.getActiveDisplaySets().length >= n",
            arg=n_display_sets, timeout=timeout_ms,
        )
        self.page.locator('[data-cy="viewport-pane"] canvas').first.wait_for(timeout=timeout_ms)
        skip = self.page.get_by_text("Skip all")  # the first-visit tour, if it shows
        try:
            skip.click(timeout=5_000)
        except Exception:  # noqa: BLE001 - no tour on this page
            pass

    def open_sr(self, description: str, timeout_ms: int = 60_000) -> dict:
        """Double-click the SR in the study browser, as a user opens it; wait until it is drawn."""
        self.page.get_by_text(description).first.dblclick()
        self.page.wait_for_function(
            "() => { const sr = window.services.displaySetService.getActiveDisplaySets()"
            ".find(d => d.Modality === 'SR'); return sr && sr.isLoaded === true; }",
            timeout=timeout_ms,
        )
        try:
            self.page.get_by_text("continue tracking measurements").first.wait_for(timeout=timeout_ms)
        except Exception as exc:  # say what the page shows instead of a bare timeout
            spread = pixel_spread(self.viewport_png())
            raise AssertionError(
                f"OHIF did not offer to track the SR's measurements ({type(exc).__name__}); "
                f"viewport spread {spread:.0f}; errors:\n" + "\n".join(self.errors)
            ) from None
        return self.state()

    def state(self) -> dict:
        return self.page.evaluate(SR_STATE_JS)

    def display_sets(self) -> list[dict]:
        """OHIF's display sets of the open study: modality, series, description, number of images."""
        return self.page.evaluate(DISPLAY_SETS_JS)

    def open_series(self, description: str, timeout_ms: int = 60_000) -> dict:
        """Double-click a series in the study browser by its description, as a user opens it; wait
        until a viewport shows its display set and the viewport is not blank. Returns the display set."""
        import time

        (shown,) = [d for d in self.display_sets() if d["description"].startswith(description)]
        self.page.get_by_text(description).first.dblclick()
        self.page.wait_for_function(SHOWN_JS, arg=shown["uid"], timeout=timeout_ms)
        deadline = time.monotonic() + timeout_ms / 1000
        while pixel_spread(self.viewport_png()) < 40 and time.monotonic() < deadline:  # drawn after loading
            self.page.wait_for_timeout(500)
        return shown

    def track(self, n_expected: int, timeout_ms: int = 60_000) -> dict:
        """Answer "Yes" to "continue tracking measurements?"; wait for the measurement service."""
        self.page.locator('[data-cy="yes-hydrate-btn"]').click()
        self.page.wait_for_function(
            "n => window.services.measurementService.getMeasurements().length >= n",
            arg=n_expected, timeout=timeout_ms,
        )
        return self.state()

    def panel_rows(self, n_expected: int, timeout_ms: int = 30_000) -> list[str]:
        """Open the measurement panel; the text of each measurement (title, then details: S: series F: frame)."""
        rows = self.page.locator('[data-cy^="measurement-table-row-"]')
        if rows.count() < n_expected:
            self.page.locator('[data-cy="trackedMeasurements-btn"]').click()
        self.page.wait_for_function(
            "n => document.querySelectorAll('[data-cy^=\"measurement-table-row-\"]').length >= n",
            arg=n_expected, timeout=timeout_ms,
        )
        return [" ".join(rows.nth(i).inner_text().split()) for i in range(rows.count())]

    def go_to_row(self, index: int) -> None:
        """Click a measurement in the panel: OHIF shows its image and frame."""
        self.page.locator('[data-cy="data-row"]').nth(index).click()

    def viewport_png(self, path: Path | None = None) -> bytes:
        return self.page.locator('[data-cy="viewport-pane"]').first.screenshot(path=path)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=path)


def pixel_spread(png: bytes) -> float:
    """How much a picture varies: the 1st to 99th percentile range of its grey levels (0 = blank)."""
    import io

    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    low, high = np.percentile(grey, [1, 99])
    return float(high - low)
