"""schemathesis against the admin app's own OpenAPI schema: generated requests never get a 5xx.

Bounded (``max_examples`` per operation) so it runs in CI; the database holds a real analysed
cine, a failed job and an SR, so list and detail endpoints answer with real rows.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.settings import Settings
from arcade_pacs.training.retrain import RetrainManager
from arcade_pacs.worker import Worker
from tests.factory import real_frame, xa_dataset
from tests.ingest import ingest
from tests.unit.admin.conftest import AUTH, TOKEN

pytestmark = [pytest.mark.slow]

MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory, tiny_classifier, rubo):
    from arcade_pacs.db import make_engine, make_session_factory, migrate

    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = Settings(storage={"root": tmp / "store", "min_free_mb": 1}, database={"url": f"sqlite:///{tmp / 'a.db'}"},
                   pipeline={"study_quiet_seconds": 0}, admin={"token": TOKEN, "trusted_hosts": ["testserver"]}, destinations=[])
    engine = make_engine(cfg.database.url)
    migrate(engine)
    sessions = make_session_factory(engine)
    ingest(rubo, cfg, sessions)
    bad = xa_dataset([real_frame(rubo, 0)] * 2)
    bad.PixelData = bad.PixelData[:1000]
    ingest(bad, cfg, sessions)
    worker = Worker(cfg, sessions, ModelHolder(tiny_classifier))
    while worker.run_once():
        pass
    with sessions() as s:
        report_ready_studies(cfg, session=s)
    holder = ModelHolder(tiny_classifier)
    # A retraining manager as the service has one; the fuzzer never gets the token for
    # POST /retrain, so it reads runs but never starts a training.
    retrainer = RetrainManager(sessions, tmp / "no-data", tmp / "serving.keras", holder.swap)
    state = AdminState(cfg, sessions, holder, retrainer, scp_listening=lambda: True, active_associations=lambda: 0)
    state.throttle.free_failures = 10**9  # generated wrong tokens must not lock the fuzzer out
    yield create_app(state)
    engine.dispose()


def test_no_server_errors(fuzzed_app):
    """Every operation of the schema, ``MAX_EXAMPLES`` generated requests each: no 5xx, bodies as documented.

    With the token every state-changing endpoint is reached, except ``POST /retrain``: a fuzzer
    must not start a training (it gets 401 there).
    (The operations are walked here rather than with ``schemathesis.pytest.from_fixture``,
    which does not work with this pytest.)
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    failures, tested = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            headers = {} if (case.method, case.path) == ("POST", "/retrain") else AUTH
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        try:
            check()
        except Exception as exc:  # collect every failing operation, not only the first
            failures.append(f"{operation.label}: {exc}")
    assert len(tested) >= 20, tested
    assert not failures, "\n\n".join(failures)
