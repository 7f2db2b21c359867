"""``make screenshots``: a picture of each dashboard page, from a real run, into docs/.

    python -m tests.integration.screenshots docs/dashboard

Sends the Rubo cine with storescu to `arcade-pacs serve` (shipped model), waits for its SR to
reach the PACS (storescp), then photographs each page in headless Chromium. Nothing is staged:
the pages show what the plugin did with that cine.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.integration.dashboard import chromium, log_in, plugin_with_a_study, png_of

PAGES = ("home", "study", "upload", "operations", "associations")


def take(out: Path, data_dir: Path) -> list[Path]:
    """Write ``<out>/<page>.png`` for each page; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    cine = data_dir / "dicom" / "xa_rubo0002_cine96_jpegbaseline.dcm"
    written = []
    with tempfile.TemporaryDirectory() as tmp, plugin_with_a_study(Path(tmp), cine) as plugin, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, plugin.base)

        def shot(name: str, full_page: bool = False) -> None:
            page.wait_for_load_state("networkidle")
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=full_page)
            written.append(path)

        page.goto(plugin.base + "/ui/")
        shot("home", full_page=True)
        page.goto(f"{plugin.base}/ui/studies/{plugin.study_uid}")
        shot("study", full_page=True)
        page.goto(plugin.base + "/ui/upload")
        page.set_input_files("#file", str(png_of(cine, 55, Path(tmp) / "frame55.png")))
        page.click("#upload-form button[type=submit]")
        page.wait_for_selector("#upload-answer", timeout=120_000)
        shot("upload", full_page=True)
        page.goto(plugin.base + "/ui/operations")
        shot("operations")
        page.goto(plugin.base + "/ui/associations")
        shot("associations")
    return written


def main(argv: list[str]) -> int:
    from arcade_pacs.settings import Settings
    from tests.project import PROJECT_ROOT

    out = Path(argv[0]) if argv else PROJECT_ROOT / "docs" / "dashboard"
    data_dir = Settings().data_dir
    if not data_dir.is_absolute():
        data_dir = (PROJECT_ROOT / data_dir).resolve()
    for path in take(out, data_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
