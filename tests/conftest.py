"""Shared fixtures. Real data comes from ``settings.data_dir`` (ARCADE_DATA_DIR, default
../shared/data); its absence is a failure, not a skip."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from arcade_pacs.settings import Settings  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = PROJECT_ROOT / "models" / "arcade_effb0.keras"
OHIF_CACHE = PROJECT_ROOT / "var" / "cache" / "ohif"


def pytest_addoption(parser):
    parser.addoption("--ohif-cache", type=Path, default=OHIF_CACHE,
                     help="where the OHIF test keeps the unpacked @ohif/app bundle (default var/cache/ohif)")
    parser.addoption("--screenshots", type=Path, default=None,
                     help="folder to save the OHIF test's screenshots in (e.g. docs/)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Settings().data_dir
    if not path.is_absolute():
        path = (PROJECT_ROOT / path).resolve()
    assert (path / "dicom").is_dir() and (path / "arcade").is_dir(), (
        f"test data not found under {path}: set ARCADE_DATA_DIR (see README, 'Data')"
    )
    return path


@pytest.fixture(scope="session")
def dicom_dir(data_dir) -> Path:
    return data_dir / "dicom"


@pytest.fixture(scope="session")
def arcade_dir(data_dir) -> Path:
    return data_dir / "arcade"


@pytest.fixture(scope="session")
def rubo(dicom_dir) -> Path:
    return dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny, fast Keras classifier with the product's input and output (plumbing tests only).

    Its score is a smooth function of the image (mean darkness of the centre), so different
    inputs give different, deterministic scores.
    """
    import keras

    from arcade_pacs.model.classifier import ModelInfo

    inputs = keras.Input((224, 224, 3))
    x = keras.layers.AveragePooling2D(pool_size=16)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    ModelInfo(name="tiny test model", version="tiny-1", device_uid="1.2.826.0.1.3680043.8.498.1", threshold=0.5).write(path)
    return path


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model):
    from arcade_pacs.model.classifier import Classifier

    return Classifier.load(tiny_model)


@pytest.fixture(scope="session")
def shipped_classifier():
    from arcade_pacs.model.classifier import Classifier

    assert SHIPPED_MODEL.is_file(), f"the shipped model is missing: {SHIPPED_MODEL}"
    return Classifier.load(SHIPPED_MODEL)


POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
"""The CI machine's PostgreSQL (trust authentication; `.ci/run` starts it when missing)."""


@contextlib.contextmanager
def postgres_database():
    """A new, empty PostgreSQL database for one test (dropped afterwards); yields its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"arcade_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(request, tmp_path):
    """SQLite by default; modules that must hold on both parametrise it:
    ``pytestmark = pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)``."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'arcade.db'}"
    else:
        with postgres_database() as url:
            yield url


BOTH_DATABASES = ["sqlite", "postgresql"]


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    """Settings for one test: temporary storage and database (SQLite unless parametrised), no destinations."""
    return Settings(
        storage={"root": tmp_path / "store"},
        database={"url": database_url},
        scp={"port": 11112, "allowed_calling_aets": ["STORESCU", "MODALITY"]},
        pipeline={"study_quiet_seconds": 0},
        admin={"trusted_hosts": ["testserver"]},  # the name Starlette's TestClient sends
        destinations=[],
    )


@pytest.fixture
def sessions(settings):
    from arcade_pacs.db import make_engine, make_session_factory, migrate

    engine = make_engine(settings.database.url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shipped_litert(data_dir):
    """The shipped model's LiteRT form (models/arcade_effb0.tflite with its manifest, committed).

    Rebuilt and checked on the whole val split only if it is missing or stale (minutes), as
    ``arcade-pacs engine --build`` would; tests that start the plugin serve the engine production
    serves.
    """
    from arcade_pacs.model import forms
    from arcade_pacs.model.build import build_forms
    from arcade_pacs.settings import ModelSettings, val_images_dir

    form = forms.current(SHIPPED_MODEL)
    if form is None:
        (form,) = build_forms(SHIPPED_MODEL, ModelSettings(path=SHIPPED_MODEL), val_images_dir(data_dir / "arcade"))
    return form
