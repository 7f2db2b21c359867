"""Who may read and change (issue 18): the token's strength beyond loopback, failed attempts slowed
down per client and logged without the value, the dashboard's session (not the token, expiring,
read-only, revoked at logout), and ``/predict``'s access with the dashboard's own upload slots."""

import io
import logging
import secrets

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.admin.auth import AuthThrottle, SessionStore, TooManyFailures, token_problem
from arcade_pacs.admin.deps import SESSION_COOKIE
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.service import admin_binding_problem
from arcade_pacs.settings import Settings
from tests.factory import real_frame

STRONG = "kq3V9-_xTzL0bWm2RyN8dA5cUeHf7JpG"  # 32 characters, 32 distinct


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state(settings, sessions, tiny_classifier):
    settings.admin.token = STRONG
    return AdminState(settings, sessions, ModelHolder(tiny_classifier))


@pytest.fixture
def client(state):
    with TestClient(create_app(state)) as c:
        yield c


def png(rubo) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(real_frame(rubo, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the token's strength -------------------------------------------------------------------

@pytest.mark.parametrize("weak", ["a", "s3cret", "x" * 64, "ab" * 20, "change-me-to-a-long-random-token",
                                  "CHANGE-ME-CHANGE-ME-CHANGE-ME-CHANGE-ME"])
def test_a_weak_token_is_refused_beyond_loopback_and_never_quoted(weak):
    problem = admin_binding_problem(Settings(admin={"host": "0.0.0.0", "token": weak}))
    assert problem
    assert "too weak" in problem
    assert "secrets.token_urlsafe" in problem
    assert len(weak) < 6 or weak not in problem
    assert admin_binding_problem(Settings(admin={"host": "127.0.0.1", "token": weak})) is None  # loopback


def test_a_generated_token_is_accepted():
    for _ in range(500):
        assert token_problem(secrets.token_urlsafe(32)) is None
        assert token_problem(secrets.token_hex(16)) is None
    assert admin_binding_problem(Settings(admin={"host": "10.1.2.3", "token": STRONG})) is None


# --- failed authentication is slowed down per client ------------------------------------------

def test_wrong_bearer_tokens_make_the_client_wait_and_are_logged_without_the_value(state, client, caplog):
    state.throttle.clock = clock = Clock()
    guesses = [f"guess-{i}-{secrets.token_hex(4)}" for i in range(6)]
    caplog.set_level(logging.WARNING, logger="arcade_pacs.admin.auth")
    for guess in guesses[:5]:
        assert client.get("/results", headers={"Authorization": f"Bearer {guess}"}).status_code == 401
    r = client.get("/results", headers={"Authorization": f"Bearer {guesses[5]}"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    # While it waits, even the right token is refused (else guessing would go on at full speed).
    assert client.get("/results", headers={"Authorization": f"Bearer {STRONG}"}).status_code == 429
    assert client.post("/deliveries/1/retry", headers={"Authorization": f"Bearer {STRONG}"}).status_code == 429
    clock.now += 1.5
    assert client.get("/results", headers={"Authorization": f"Bearer {STRONG}"}).status_code == 200
    # A success forgets the failures.
    assert client.get("/results", headers={"Authorization": "Bearer wrong-again"}).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "arcade_pacs.admin.auth"]
    assert len(lines) == 6, lines
    assert all("bearer token from testclient" in line for line in lines), lines
    assert "5 failure(s) in a row; its next attempt is refused for 1 s" in lines[4]
    assert not any(g in caplog.text for g in guesses)
    assert STRONG not in caplog.text


def test_the_wait_doubles_and_is_capped():
    clock = Clock()
    throttle = AuthThrottle(free_failures=2, max_wait_s=10, forget_s=900, clock=clock)
    waits = []
    for _ in range(8):
        throttle.failed("10.0.0.9", "bearer token")
        try:
            throttle.check("10.0.0.9")
            waits.append(0)
        except TooManyFailures as exc:
            waits.append(exc.retry_after)
    assert waits == [0, 1, 2, 4, 8, 10, 10, 10]
    throttle.check("10.0.0.10")  # another client is not held up
    clock.now += 901
    throttle.check("10.0.0.9")  # forgotten after forget_s


def test_a_request_without_a_token_is_not_a_guess(client):
    for _ in range(20):
        assert client.get("/results").status_code == 401
    assert client.get("/results", headers={"Authorization": f"Bearer {STRONG}"}).status_code == 200


def test_failed_logins_are_throttled(state, client, caplog):
    """300 wrong logins took 0.3 s with no delay (issue 18): now the sixth is refused with 429."""
    state.throttle.clock = clock = Clock()
    caplog.set_level(logging.WARNING, logger="arcade_pacs.admin.auth")
    answers = [client.post("/ui/login", data={"token": f"wrong-{i}"}, follow_redirects=False) for i in range(8)]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    assert "Too many failed attempts" in answers[5].text
    assert answers[5].headers["Retry-After"] == "1"
    right = client.post("/ui/login", data={"token": STRONG}, follow_redirects=False)
    assert right.status_code == 429
    assert SESSION_COOKIE not in right.cookies
    clock.now += 2
    assert client.post("/ui/login", data={"token": STRONG}, follow_redirects=False).status_code == 303
    assert "dashboard login from testclient" in caplog.text
    assert "wrong-" not in caplog.text


# --- the dashboard's session --------------------------------------------------------------------

def test_login_issues_an_expiring_session_that_is_not_the_token(state, client):
    r = client.post("/ui/login", data={"token": STRONG}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    value = r.cookies[SESSION_COOKIE]
    assert STRONG not in cookie
    assert value != STRONG
    assert len(value) >= 40
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "max-age", "path", "samesite"} <= attributes
    assert "secure" not in attributes
    assert "samesite=strict" in cookie.lower()
    assert f"max-age={8 * 3600}" in cookie.lower()
    assert "arcade_token=" in r.headers.get_list("set-cookie")[-1]  # the old cookie (the token itself) is deleted
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    assert client.get("/results").status_code == 200  # reading, with the cookie alone
    assert 'action="/ui/logout"' in client.get("/ui/").text


def test_the_session_only_reads(state, client, analysed_rubo):
    client.post("/ui/login", data={"token": STRONG})
    value = client.cookies[SESSION_COOKIE]
    assert client.post(f"/studies/{analysed_rubo}/reanalyse").status_code == 401
    assert client.post(f"/ui/operations/studies/{analysed_rubo}/reanalyse").status_code == 401
    assert client.post("/retrain", json={"epochs": 1}).status_code == 401
    # Nor is its value a token.
    assert client.post(f"/studies/{analysed_rubo}/reanalyse",
                       headers={"Authorization": f"Bearer {value}"}).status_code == 401
    assert client.post(f"/studies/{analysed_rubo}/reanalyse",
                       headers={"Authorization": f"Bearer {STRONG}"}).status_code == 202


def test_the_token_itself_is_no_longer_a_cookie(client):
    client.cookies.set("arcade_token", STRONG)
    assert client.get("/results").status_code == 401
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_logout_revokes_the_session(state, client):
    client.post("/ui/login", data={"token": STRONG})
    value = client.cookies[SESSION_COOKIE]
    r = client.post("/ui/logout", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]
    assert "max-age=0" in r.headers["set-cookie"].lower()
    client.cookies.set(SESSION_COOKIE, value)  # a copy kept by someone: revoked on the server too
    assert client.get("/results").status_code == 401
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_a_session_expires(state, client):
    state.logins.clock = clock = Clock()
    client.post("/ui/login", data={"token": STRONG})
    assert client.get("/results").status_code == 200
    clock.now += 8 * 3600 + 1
    assert client.get("/results").status_code == 401


def test_the_cookie_is_secure_over_https(state):
    with TestClient(create_app(state), base_url="https://testserver") as c:
        r = c.post("/ui/login", data={"token": STRONG}, follow_redirects=False)
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert "secure" in c.post("/ui/logout", follow_redirects=False).headers["set-cookie"].lower()


def test_the_session_store_is_bounded():
    store = SessionStore(60, clock=Clock())
    store.MAX_SESSIONS = 3
    ids = [store.issue() for _ in range(5)]
    assert len(store) == 3
    assert not store.valid(ids[0])
    assert store.valid(ids[4])
    store.revoke(ids[4])
    assert not store.valid(ids[4])
    assert not store.valid("")
    assert not store.valid(None)


# --- /predict and the dashboard's upload --------------------------------------------------------

def test_predict_needs_the_token_or_a_session_when_one_is_set(client, rubo):
    files = {"file": ("frame.png", png(rubo), "image/png")}
    assert client.post("/predict", files=files).status_code == 401
    assert client.post("/predict", files=files, headers={"Authorization": f"Bearer {STRONG}"}).status_code == 200
    client.post("/ui/login", data={"token": STRONG})
    assert client.post("/predict", files=files).status_code == 200


def test_predict_is_open_without_a_token(settings, sessions, tiny_classifier, rubo):
    with TestClient(create_app(AdminState(settings, sessions, ModelHolder(tiny_classifier)))) as open_client:
        r = open_client.post("/predict", files={"file": ("frame.png", png(rubo), "image/png")})
    assert r.status_code == 200


def test_the_dashboard_upload_has_its_own_slots(state, client, rubo):
    """/predict's users, however many, cannot take the dashboard's upload away."""
    client.post("/ui/login", data={"token": STRONG})
    files = {"file": ("frame.png", png(rubo), "image/png")}
    for _ in range(state.settings.admin.predict_concurrency):
        assert state.predict_slots.acquire(blocking=False)
    try:
        assert client.post("/predict", files=files).status_code == 429
        r = client.post("/ui/upload", files=files)
        assert r.status_code == 200
        assert 'id="upload-answer"' in r.text
    finally:
        for _ in range(state.settings.admin.predict_concurrency):
            state.predict_slots.release()
    for _ in range(state.settings.admin.upload_concurrency):
        assert state.upload_slots.acquire(blocking=False)
    try:
        r = client.post("/ui/upload", files=files)
        assert r.status_code == 429
        assert "at most 2 predictions at once" in r.text
        assert client.post("/predict", files=files).status_code == 200
    finally:
        for _ in range(state.settings.admin.upload_concurrency):
            state.upload_slots.release()
