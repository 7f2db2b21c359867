"""A regular (not editable) install carries what the code loads at run time."""

import subprocess
import sys
import zipfile

import pytest

from tests.project import PROJECT_ROOT

pytestmark = [pytest.mark.slow]


def test_the_wheel_ships_the_declared_contexts_migrations_and_templates(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("arcade_pacs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "arcade_pacs/dicom/presentation_contexts.toml",
        "arcade_pacs/db/migrations/env.py",
        "arcade_pacs/db/migrations/script.py.mako",
        "arcade_pacs/db/migrations/versions/0001_initial_schema.py",
        "arcade_pacs/training/card_template.md",
        "arcade_pacs/admin/pages/templates/study.html",
        "arcade_pacs/admin/pages/static/htmx.min.js",
        "arcade_pacs/admin/pages/static/app.js",
        "arcade_pacs/admin/pages/static/style.css",
    ):
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "scp/", "models/")) for name in names)
