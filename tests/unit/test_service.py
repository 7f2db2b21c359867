"""What ``serve`` refuses before it starts anything: a public admin without a token, a schema it
does not know; and ``db upgrade`` that fixes the latter (SQLite and PostgreSQL)."""

import subprocess
import sys

import pytest
from sqlalchemy import text

from arcade_pacs.db import head_revision, make_engine, migrate, schema_problem
from arcade_pacs.service import admin_binding_problem
from arcade_pacs.settings import Settings
from tests.project import BOTH_DATABASES


def test_an_admin_beyond_loopback_needs_a_token():
    assert admin_binding_problem(Settings()) is None  # default: 127.0.0.1, no token
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert admin_binding_problem(Settings(admin={"host": host})) is None
    for host in ("0.0.0.0", "::", "10.1.2.3", "pacs-ai.hospital.org"):
        problem = admin_binding_problem(Settings(admin={"host": host}))
        assert problem, host
        assert "admin.token" in problem, host
        assert admin_binding_problem(Settings(admin={"host": host, "token": "kq3V9-_xTzL0bWm2RyN8dA5cUeHf7JpG"})) is None
        assert "too weak" in admin_binding_problem(Settings(admin={"host": host, "token": "x" * 32}))



def test_a_stow_sender_beyond_loopback_needs_a_strong_token_too():
    strong = "kq3V9-_xTzL0bWm2RyN8dA5cUeHf7JpG"
    weak = {"name": "CATHLAB", "token": "stow-token-0123456789abcdef"}  # 27 characters
    assert admin_binding_problem(Settings(dicomweb_senders=[weak])) is None  # loopback admin
    problem = admin_binding_problem(Settings(admin={"host": "0.0.0.0", "token": strong}, dicomweb_senders=[weak]))
    assert "'CATHLAB'" in problem
    assert "at least 32" in problem
    assert weak["token"] not in problem  # never quoted back
    assert admin_binding_problem(Settings(admin={"host": "0.0.0.0", "token": strong},
                                          dicomweb_senders=[{"name": "CATHLAB", "token": strong[::-1]}])) is None


@pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)
def test_serve_refuses_a_schema_it_does_not_know_and_db_upgrade_fixes_it(database_url, tmp_path):
    engine = make_engine(database_url)
    try:
        assert "arcade-pacs db upgrade" in schema_problem(engine)  # empty database
        migrate(engine)
        assert schema_problem(engine) is None
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
        problem = schema_problem(engine)
        assert "0003" in problem
        assert head_revision() in problem
        assert "arcade-pacs db upgrade" in problem
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        assert "unknown to this version" in schema_problem(engine)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE alembic_version SET version_num = '{head_revision()}'"))
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", BOTH_DATABASES, indirect=True)
def test_serve_says_which_command_to_run_and_db_upgrade_runs_it(database_url, tmp_path, tiny_model):
    env_args = [sys.executable, "-m", "arcade_pacs.cli"]
    config = tmp_path / "arcade.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[model]\npath = "{tiny_model}"\n'
                      f'[storage]\nroot = "{tmp_path / "store"}"\n')
    out = subprocess.run(env_args + ["--config", str(config), "serve"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "refusing to start" in out.stderr
    assert "arcade-pacs db upgrade" in out.stderr
    out = subprocess.run(env_args + ["--config", str(config), "db", "upgrade"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert head_revision() in out.stdout, out.stderr
    out = subprocess.run(env_args + ["--config", str(config), "db", "current"], capture_output=True, text=True, timeout=60)
    assert f"database schema: {head_revision()}" in out.stdout
    public = tmp_path / "public.toml"
    public.write_text(config.read_text() + '[admin]\nhost = "0.0.0.0"\n')
    out = subprocess.run(env_args + ["--config", str(public), "serve"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "admin.token" in out.stderr


def test_a_supervised_worker_is_woken_by_its_parent_and_exits_with_it():
    """The parent's line on stdin wakes the child's workers; end of file (the parent died) ends it."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c",
         "import os, time\n"
         "from arcade_pacs.jobs.supervisor import ParentLink\n"
         "link = ParentLink(os.getppid())\n"
         "link.on_wake = lambda: print('woken', flush=True)\n"
         "link.start()\n"
         "time.sleep(60)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "woken"
        child.stdin.close()  # what the kernel does when the parent dies
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()


def test_a_supervised_worker_stops_without_a_fatal_error_while_its_parent_lives():
    """``docker stop`` ends the child while its parent still holds the pipe: interpreter shutdown
    runs while the link's daemon thread waits on stdin. It must not print "Fatal Python error:
    _enter_buffered_busy" (the thread once held stdin's buffered reader lock)."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import os, time\n"
         "from arcade_pacs.jobs.supervisor import ParentLink\n"
         "ParentLink(os.getppid()).start()\n"
         "time.sleep(1)\n"],  # the link's thread is blocked on stdin when the interpreter ends
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        err = child.stderr.read().decode()  # until the child exits; stdin stays open meanwhile
        assert child.wait(timeout=60) == 0, err
        assert "Fatal Python error" not in err, err
    finally:
        child.kill()
        child.stdin.close()


def test_stop_waits_for_its_loops_within_one_deadline_and_names_those_it_leaves(tmp_path, monkeypatch, caplog):
    import threading

    from arcade_pacs import service as service_module
    from arcade_pacs.service import Role, Service

    url = f"sqlite:///{tmp_path / 'arcade.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    settings = Settings(database={"url": url}, storage={"root": str(tmp_path / "store")})
    served = Service(settings, Role.SCP, http=False)
    release = threading.Event()
    for name in ("stuck-a", "stuck-b"):  # two loops stuck on a database that went away
        served._thread(name, lambda: release.wait(600))
    monkeypatch.setattr(service_module, "STOP_WAIT_S", 0.5)
    try:
        stopper = threading.Thread(target=served.stop)
        stopper.start()
        stopper.join(timeout=60)
        assert not stopper.is_alive()  # one deadline for both, not one each, and no hang
        assert "stuck-a, stuck-b" in caplog.text
    finally:
        release.set()
