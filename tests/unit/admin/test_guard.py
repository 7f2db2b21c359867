"""Every response carries the security headers; only trusted host names are answered (a
DNS-rebinding page cannot read an SR); a cross-origin write is refused (issue 18)."""

import socket

import pytest
from fastapi.testclient import TestClient

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.admin.guard import host_name, trusted_hosts
from arcade_pacs.db.tables import Report
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.settings import Settings
from tests.unit.admin.conftest import AUTH, TOKEN


def assert_hardened(response, docs: bool = False):
    h = response.headers
    csp = h["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert ("'unsafe-inline'" in csp) == docs, csp
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin"


@pytest.fixture
def client(state):
    state.settings.admin.token = TOKEN
    state.settings.admin.predict_max_mb = 1
    with TestClient(create_app(state)) as c:
        yield c


@pytest.fixture
def sr_uid(settings, sessions, analysed_rubo):
    with sessions() as s:
        report_ready_studies(settings, session=s)
        return s.query(Report).one().sop_instance_uid


def test_every_kind_of_answer_is_hardened(client, analysed_rubo):
    answers = {
        "page": client.get("/ui/", headers=AUTH),
        "login page": client.get("/ui/login"),
        "redirect": client.get("/ui/", follow_redirects=False),
        "json": client.get("/health"),
        "metrics": client.get("/metrics"),
        "png": client.get(f"/results/{client.get('/results', headers=AUTH).json()[0]['instance_id']}/probability.png",
                          headers=AUTH),
        "static": client.get("/ui/static/app.js"),
        "401": client.get("/results"),
        "404": client.get("/no/such/thing"),
        "422": client.get("/studies?offset=-1", headers=AUTH),
        "413 while reading": client.post("/predict", headers=AUTH, content=b"x" * (3 * 1024 * 1024)),
        "openapi": client.get("/openapi.json"),
    }
    for name, r in answers.items():
        assert r.status_code in (200, 303, 401, 404, 413, 422), (name, r.status_code)
        assert_hardened(r), name
    assert_hardened(client.get("/docs"), docs=True)
    assert_hardened(client.get("/redoc"), docs=True)


def test_a_rebinding_page_cannot_read_an_sr(settings, state, sr_uid):
    """The SR carries the patient's name, ID and birth date; a page at attacker.example re-pointed
    at this host sends ``Host: attacker.example`` and is refused, whatever else it sends."""
    settings.admin.trusted_hosts = ["pacs-ai.hospital.org", "*.radiology.example"]
    with TestClient(create_app(state), base_url="http://127.0.0.1:8000") as c:
        url = f"/reports/{sr_uid}.dcm"
        ok = c.get(url)
        assert ok.status_code == 200
        assert ok.content[128:132] == b"DICM"
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.nip.io:8000", "localhost.attacker.example",
                     "pacs-ai.hospital.org.attacker.example", "radiology.example"):
            r = c.get(url, headers={"Host": host})
            assert r.status_code == 400, host
            assert r.content[128:132] != b"DICM", host
            assert "admin.trusted_hosts" in r.json()["detail"]
            assert_hardened(r)
            assert c.get("/health", headers={"Host": host}).status_code == 400
        for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "10.1.2.3", "pacs-ai.hospital.org",
                     "pacs-ai.hospital.org.:8000", "ct.radiology.example", f"{socket.gethostname()}:8000"):
            assert c.get(url, headers={"Host": host}).status_code == 200, host


def test_the_trusted_names_come_from_the_configuration():
    names = trusted_hosts(Settings(admin={"host": "Pacs-AI.hospital.org", "trusted_hosts": ["ingress.example"]}))
    assert {"localhost", "pacs-ai.hospital.org", "ingress.example", socket.gethostname().lower()} == set(names)
    assert "0.0.0.0" not in trusted_hosts(Settings(admin={"host": "0.0.0.0"}))
    assert host_name("[fe80::1]:8000") == "fe80::1"
    assert host_name("Example.ORG.:443") == "example.org"


def test_trusted_hosts_star_turns_the_check_off(state):
    state.settings.admin.trusted_hosts = ["*"]
    with TestClient(create_app(state)) as c:
        assert c.get("/health", headers={"Host": "anything.example"}).status_code == 200


def test_a_cross_origin_write_is_refused(client, analysed_rubo):
    url = f"/studies/{analysed_rubo}/reanalyse"
    r = client.post(url, headers={**AUTH, "Origin": "http://attacker.example"})
    assert r.status_code == 403
    assert r.json()["detail"] == "cross-origin request refused"
    assert client.post("/ui/login", data={"token": TOKEN}, headers={"Origin": "null"}).status_code == 403
    # The same origin, or a client that sends none (curl, the CLI), passes.
    assert client.post(url, headers={**AUTH, "Origin": "http://testserver"}).status_code == 202
    assert client.post(url, headers=AUTH).status_code == 409
    assert client.get("/health", headers={"Origin": "http://attacker.example"}).status_code == 200


def test_probe_processes_are_hardened_too(settings, sessions):
    with TestClient(create_app(AdminState(settings, sessions, None), full=False)) as c:
        assert_hardened(c.get("/health"))
        assert c.get("/health", headers={"Host": "attacker.example"}).status_code == 400
        assert c.get("/docs").status_code == 404  # the documentation is the full admin's
