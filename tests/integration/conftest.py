import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, stop, tool, wait_for_port


def write_config(path: Path, values: dict) -> Path:
    """Write a TOML config (flat sections, and arrays of tables such as destinations)."""
    lines = []
    for section, table in values.items():
        if isinstance(table, list):
            continue
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines.append(f"{key} = {_toml(value)}")
    for section, entries in values.items():
        for entry in entries if isinstance(entries, list) else []:
            lines.append(f"[[{section}]]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in entry.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def plugin_config(tmp_path: Path, scp_port: int, admin_port: int, pacs_port: int,
                  allowed: list[str], model: Path, objects: list[str] | None = None,
                  outbox: dict | None = None) -> Path:
    """A config for one test: loopback ports, its own storage and database, one PACS (AE PACS)
    receiving ``objects`` (the default kinds when None)."""
    destination = {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port}
    if objects is not None:
        destination["objects"] = objects
    values = {
        "scp": {"ae_title": "ARCADE", "host": "127.0.0.1", "port": scp_port, "allowed_calling_aets": allowed},
        "storage": {"root": str(tmp_path / "store")},
        "database": {"url": f"sqlite:///{tmp_path / 'arcade.db'}"},
        "model": {"path": str(model)},
        "pipeline": {"study_quiet_seconds": 1},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "destinations": [destination],
    }
    if outbox:
        values["outbox"] = outbox
    return write_config(tmp_path / "arcade.toml", values)


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\") + '"'


@pytest.fixture
def storescp(tmp_path):
    """DCMTK's storescp as the receiving PACS (AE title PACS), writing what it gets to a folder."""
    out = tmp_path / "pacs"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [tool("storescp"), "-aet", "PACS", "-od", str(out), "+B", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc=proc)
    yield type("StoreSCP", (), {"port": port, "folder": out, "proc": proc})
    stop(proc)


def upgrade_database(config: Path) -> None:
    """``arcade-pacs db upgrade``, as `make run` runs it before ``serve``."""
    out = subprocess.run([sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "db", "upgrade"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def start_plugin(config: Path, log: Path, scp_port: int, admin_port: int, role: str | None = None,
                 env: dict | None = None) -> subprocess.Popen:
    """``arcade-pacs db upgrade`` then ``serve`` as its own process, exactly as `make run` starts it."""
    upgrade_database(config)
    return start_serve(config, log, scp_port, admin_port, role, env)


def start_serve(config: Path, log: Path, scp_port: int | None, admin_port: int | None, role: str | None = None,
                env: dict | None = None) -> subprocess.Popen:
    """``arcade-pacs serve [--role ROLE]`` on an upgraded database; waits for its ports."""
    import os

    args = [sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "serve"]
    if role:
        args += ["--role", role]
        if admin_port is None:
            args.append("--no-http")
    proc = subprocess.Popen(
        args, stdout=log.open("a"), stderr=subprocess.STDOUT, env=None if env is None else {**os.environ, **env},
    )
    try:
        for port in (scp_port, admin_port):
            if port is not None:
                wait_for_port(port, timeout=120, proc=proc)
    except Exception:
        stop(proc)
        raise RuntimeError("plugin did not start:\n" + log.read_text()[-3000:]) from None
    return proc


@pytest.fixture(scope="session", autouse=True)
def _shipped_engine_ready(shipped_litert):
    """Every plugin started here serves the checked LiteRT form (built once, before the first)."""
    return shipped_litert
