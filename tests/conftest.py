"""Shared fixtures. Real data comes from ``settings.data_dir`` (ARCADE_DATA_DIR, default
../shared/data); its absence is a failure, not a skip. The real peers (storescp, Orthanc, the
plugin as a process, PostgreSQL) are the bench's, from :mod:`arcade_pacs.bench.peers`; the
fixtures here start them and stop them after the test. Test modules import constants from
:mod:`tests.project`, never from this file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from arcade_pacs.bench.peers import Plugin, StoreSCP, postgres_database  # noqa: E402
from arcade_pacs.settings import Settings  # noqa: E402
from tests.project import OHIF_CACHE, PROJECT_ROOT, SHIPPED_MODEL  # noqa: E402


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
    assert (path / "dicom").is_dir(), f"test data not found under {path}: set ARCADE_DATA_DIR (see README, 'Data')"
    assert (path / "arcade").is_dir(), f"test data not found under {path}: set ARCADE_DATA_DIR (see README, 'Data')"
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


@pytest.fixture
def database_url(request, tmp_path):
    """SQLite by default; modules that must hold on both parametrise it with
    :data:`tests.project.BOTH_DATABASES`."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'arcade.db'}"
    else:
        with postgres_database() as url:
            yield url


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
    """The shipped model's LiteRT form (models/arcade_stenosis.tflite with its manifest, committed).

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


# --- real peers ---------------------------------------------------------------------------


@pytest.fixture
def storescp(tmp_path):
    """DCMTK's storescp as the receiving PACS (AE title PACS), writing what it gets, byte for byte
    (``+B``), to ``tmp_path / "pacs"``."""
    with StoreSCP(tmp_path / "pacs", notify=False, bit_preserving=True) as pacs:
        yield pacs


@pytest.fixture
def pacs(tmp_path):
    """DCMTK's storescp writing one file per receipt (``+uf``), so a duplicate transmission shows."""
    with StoreSCP(tmp_path / "pacs", notify=False, unique_names=True) as scp:
        yield scp


@pytest.fixture
def start_plugin():
    """Start ``arcade-pacs serve`` as its own process (:meth:`Plugin.start`: ``db upgrade`` then
    ``serve``; ``upgrade=False``: ``serve`` only); every plugin started is stopped after the test."""
    started: list[Plugin] = []

    def start(config, log, scp_port, admin_port, role=None, env=None, upgrade=True) -> Plugin:
        plugin = (Plugin.start if upgrade else Plugin.serve)(config, log, scp_port, admin_port, role, env)
        started.append(plugin)
        return plugin

    yield start
    for plugin in started:
        plugin.close()
