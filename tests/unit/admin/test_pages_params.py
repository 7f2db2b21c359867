"""No dashboard parameter answers 500 (issue 18): they are bounded as the API's are, and refused
with a page (422), on SQLite and PostgreSQL alike; schemathesis walks every dashboard route."""

import pytest
import schemathesis
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from arcade_pacs.admin.app import create_app
from arcade_pacs.admin.pages import routes as pages
from tests.project import BOTH_DATABASES
from tests.unit.admin.conftest import AUTH, TOKEN

pytestmark = pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)


@pytest.fixture
def client(state):
    state.settings.admin.token = TOKEN
    with TestClient(create_app(state), headers=AUTH) as c:
        yield c


@pytest.mark.parametrize("url", [
    "/ui/studies?offset=99999999999999999999",
    "/ui/associations?offset=9223372036854775808",
    "/ui/studies?offset=-1",
    "/ui/associations?offset=abc",
    "/ui/studies/" + "1" * 200,
    "/ui/studies/1.2%003",
])
def test_out_of_range_parameters_get_a_page_not_a_500(client, url):
    r = client.get(url)
    assert r.status_code == 422, (url, r.status_code)
    assert r.headers["content-type"].startswith("text/html"), (url, r.status_code)
    assert "Invalid request" in r.text
    assert "Home" in r.text


def test_in_range_parameters_still_work(client):
    assert client.get("/ui/studies?offset=10000000").status_code == 200
    assert client.get("/ui/associations?offset=0").status_code == 200
    assert client.get("/ui/studies/1.2.3").status_code == 404


def test_the_api_refuses_a_nul_in_a_uid_too(client):
    assert client.get("/studies/1.2%003").status_code == 422
    assert client.get("/reports/1.2%003.dcm").status_code in (404, 422)


def dashboard_schema() -> dict:
    """An OpenAPI schema of the dashboard's routes (which the app leaves out of /docs)."""
    routes = [r for r in (*pages.pages.routes, *pages.router.routes) if isinstance(r, APIRoute)]
    hidden = [r.include_in_schema for r in routes]
    try:
        for r in routes:
            r.include_in_schema = True
        return get_openapi(title="dashboard", version="1", routes=routes)
    finally:
        for r, flag in zip(routes, hidden, strict=True):
            r.include_in_schema = flag


@pytest.mark.slow
def test_no_dashboard_route_answers_500(state, database_url):
    """schemathesis over every dashboard route, with the token (the forms reach their work; the
    retraining form is sent without it, as the API fuzzer does, so no training starts)."""
    state.settings.admin.token = TOKEN
    state.throttle.free_failures = 10**9  # generated wrong tokens must not lock the fuzzer out
    app = create_app(state)
    schema = schemathesis.openapi.from_dict(dashboard_schema())
    schema.app = app
    failures, tested = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            headers = {} if case.path == "/ui/operations/retrain" else AUTH
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert len(tested) >= 14, tested
    assert not failures, "\n\n".join(failures)
