import pytest
from fastapi.testclient import TestClient

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from tests.ingest import ingest

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def state(settings, sessions, tiny_classifier):
    return AdminState(settings, sessions, ModelHolder(tiny_classifier))


@pytest.fixture
def open_client(state):
    """The app with no token configured (the default)."""
    with TestClient(create_app(state)) as c:
        yield c


@pytest.fixture
def analysed_rubo(settings, sessions, tiny_classifier, rubo):
    """The Rubo cine stored and analysed by the worker with the tiny model; returns its Study UID."""
    import pydicom

    ingest(rubo, settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    assert worker.run_once()
    return str(pydicom.dcmread(rubo, stop_before_pixels=True).StudyInstanceUID)
