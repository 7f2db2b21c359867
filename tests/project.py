"""Where the project's own files are, and which databases the database tests run on.

Plain constants, imported by test modules (a ``conftest.py`` is pytest's to import, not theirs).
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = PROJECT_ROOT / "models" / "arcade_stenosis.keras"
OHIF_CACHE = PROJECT_ROOT / "var" / "cache" / "ohif"

BOTH_DATABASES = ["sqlite", "postgresql"]
"""Modules that must hold on both: ``pytestmark = pytest.mark.parametrize("database_url", BOTH_DATABASES,
indirect=True)`` (the ``database_url`` fixture makes each)."""
