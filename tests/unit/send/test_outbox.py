"""The outbox against real peers: DCMTK's storescp accepts, a closed port refuses."""

import subprocess

import pytest
from sqlalchemy import select

from arcade_pacs.conformance import load_contexts
from arcade_pacs.db.tables import Delivery, utcnow
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.send import outbox
from arcade_pacs.send.outbox import DeliveryState
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.settings import Destination
from arcade_pacs.worker import Worker
from tests.helpers import free_port, stop, tool, wait_for_port
from tests.ingest import ingest

pytestmark = [pytest.mark.network]


@pytest.fixture
def pacs(tmp_path):
    port = free_port()
    folder = tmp_path / "received"
    folder.mkdir()
    proc = subprocess.Popen([tool("storescp"), "-aet", "PACS", "-od", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc=proc)
    yield port, folder
    stop(proc)


def test_send_then_fail_with_backoff_then_retry(settings, sessions, tiny_classifier, rubo, pacs):
    port, folder = pacs
    closed = free_port()
    settings.destinations = [Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port),
                             Destination(name="down", ae_title="DOWN", host="127.0.0.1", port=closed)]
    ingest(rubo, settings, sessions)
    worker = Worker(settings, sessions, ModelHolder(tiny_classifier))
    worker.run_once()
    scu = StoreSCU(settings, load_contexts())
    with sessions() as s:
        report_ready_studies(settings, session=s)
        assert outbox.send_due(scu, session=s) == 2
        by_name = {d.destination: d for d in s.scalars(select(Delivery))}
        assert by_name["pacs"].state == DeliveryState.SENT.value and by_name["pacs"].last_status == 0
        down = by_name["down"]
        assert down.state == DeliveryState.PENDING.value and down.attempts == 1
        assert "association" in down.last_error and down.next_attempt_at > utcnow()
        assert outbox.send_due(scu, session=s) == 0  # backing off
        for _ in range(outbox.MAX_ATTEMPTS - 1):
            down.next_attempt_at = utcnow()
            s.commit()
            outbox.send_due(scu, session=s)
        assert down.state == DeliveryState.FAILED.value
        assert outbox.counts_by_state(session=s) == {"pending": 0, "sent": 1, "failed": 1, "superseded": 0}
        assert outbox.retry(down.id, session=s) and down.state == DeliveryState.PENDING.value
        assert not outbox.retry(by_name["pacs"].id, session=s)  # only failed deliveries are retried
    assert len(list(folder.glob("SR*"))) == 1
