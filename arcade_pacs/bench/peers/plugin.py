"""The plugin itself as a peer: ``arcade-pacs serve`` in its own process, started exactly as
`make run` starts it (``db upgrade``, then ``serve``) from a TOML config written here.

One TOML writer serves the bench and the tests, so a value (a path with a backslash, a token
with a quote) is written the same way for both and reads back as it was written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from arcade_pacs.bench.peers.processes import LOOPBACK, free_port, process_tree, stop, wait_for_port

# --- the config ---------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped (TOML 1.0, "String")."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value) -> str:
    """One TOML value: bool, int, finite float, string (a path as its text) or array of these."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a config value must be finite, not {value}")
        return repr(value)
    if isinstance(value, (str, Path)):
        return toml_string(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")


def _is_tables(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(name: str, table: Mapping, lines: list[str]) -> None:
    """``[name]`` with its keys, then its sub-tables ``[name.sub]`` and arrays of tables ``[[name.sub]]``."""
    lines.append(f"[{name}]")
    _body(name, table, lines)


def _body(prefix: str, table: Mapping, lines: list[str]) -> None:
    join = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: key)
    lines += [f"{key} = {toml_value(value)}" for key, value in table.items()
              if not isinstance(value, Mapping) and not _is_tables(value)]
    for key, value in table.items():
        if isinstance(value, Mapping):
            _table(join(key), value, lines)
        elif _is_tables(value):
            for entry in value:
                lines.append(f"[[{join(key)}]]")
                _body(join(key), entry, lines)


def write_config(path: Path, values: Mapping) -> Path:
    """Write ``values`` as TOML: top-level keys, tables (``{"scp": {...}}``) and arrays of tables
    (``{"destinations": [{...}, ...]}``); an empty list stays an empty array."""
    lines: list[str] = []
    _body("", values, lines)
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def loopback_config(work: Path, scp_port: int, admin_port: int, model_path: Path | str,
                    destinations: list[dict], allowed: list[str] | tuple[str, ...] = ("STORESCU",),
                    **sections) -> dict:
    """The values of a config for one plugin on loopback with its own storage and SQLite database
    under ``work`` (quiet period 1 s); each of ``sections`` is merged into its table, or added."""
    values: dict = {
        "scp": {"ae_title": "ARCADE", "host": LOOPBACK, "port": scp_port, "allowed_calling_aets": list(allowed)},
        "storage": {"root": str(Path(work) / "store")},
        "database": {"url": f"sqlite:///{Path(work) / 'arcade.db'}"},
        "model": {"path": str(model_path)},
        "pipeline": {"study_quiet_seconds": 1},
        "admin": {"host": LOOPBACK, "port": admin_port},
    }
    for name, table in sections.items():
        values[name] = {**values[name], **table} if isinstance(table, Mapping) and name in values else table
    values["destinations"] = destinations
    return values


def dimse_destination(port: int, name: str = "pacs", aet: str = "PACS", objects: list[str] | None = None) -> dict:
    """A C-STORE destination on loopback; ``objects`` the kinds it receives (the defaults when None)."""
    destination = {"name": name, "ae_title": aet, "host": LOOPBACK, "port": port}
    if objects is not None:
        destination["objects"] = objects
    return destination


# --- the process --------------------------------------------------------------------------


def upgrade_database(config: Path, env: dict | None = None) -> None:
    """``arcade-pacs db upgrade``, as `make run` runs it before ``serve``."""
    out = subprocess.run([sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "db", "upgrade"],
                         capture_output=True, text=True, timeout=300, env=_environment(env))
    if out.returncode:
        raise RuntimeError(f"arcade-pacs db upgrade failed ({out.returncode}):\n{(out.stdout + out.stderr)[-3000:]}")


def _environment(env: dict | None) -> dict | None:
    return None if env is None else {**os.environ, **env}


@dataclass
class Plugin:
    """``arcade-pacs serve [--role ROLE]`` in its own process; ``None`` for a port its role does not open.

    :meth:`start` and :meth:`serve` start it; use it as a context manager, or call :meth:`close`.
    """

    proc: subprocess.Popen
    config: Path
    log: Path
    scp_port: int | None
    admin_port: int | None
    startup_s: float = 0.0
    status: dict = field(default_factory=dict)

    @classmethod
    def start(cls, config: Path, log: Path, scp_port: int | None, admin_port: int | None, role: str | None = None,
              env: dict | None = None, timeout: float = 120.0) -> Plugin:
        """``arcade-pacs db upgrade`` then ``serve``, as `make run` starts it; returns once its ports listen."""
        upgrade_database(config, env)
        return cls.serve(config, log, scp_port, admin_port, role, env, timeout)

    @classmethod
    def serve(cls, config: Path, log: Path, scp_port: int | None, admin_port: int | None, role: str | None = None,
              env: dict | None = None, timeout: float = 120.0) -> Plugin:
        """``arcade-pacs serve [--role ROLE]`` on an upgraded database (its output appended to ``log``);
        returns once its ports listen (a role without HTTP gets ``--no-http``)."""
        args = [sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "serve"]
        if role:
            args += ["--role", role]
            if admin_port is None:
                args.append("--no-http")
        started = time.monotonic()
        with Path(log).open("a") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_environment(env))
        plugin = cls(proc, Path(config), Path(log), scp_port, admin_port)
        try:
            for port in (scp_port, admin_port):
                if port is not None:
                    wait_for_port(port, timeout=timeout, proc=proc)
        except Exception:
            plugin.close()
            raise RuntimeError(f"arcade-pacs serve did not start:\n{plugin.log_tail()}") from None
        plugin.startup_s = time.monotonic() - started
        return plugin

    def __enter__(self) -> Plugin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        """Its exit status, or ``None`` while it runs."""
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def get(self, path: str, timeout: float = 10.0, token: str | None = None):
        """The JSON answer of its admin API at ``path``."""
        request = urllib.request.Request(f"http://{LOOPBACK}:{self.admin_port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.load(r)

    def wait_model_loaded(self, timeout: float) -> None:
        """Wait until ``/health`` says the model is loaded (the admin answers before it is)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.poll() is not None:
                raise RuntimeError(f"arcade-pacs serve exited ({self.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"arcade-pacs serve not ready after {timeout}s:\n{self.log_tail()}")
            try:
                if self.get("/health", timeout=2).get("model_loaded"):
                    return
            except OSError:
                pass
            time.sleep(0.05)

    def idle(self, timeout: float, reports: int = 0) -> None:
        """Wait until the plugin has nothing left to do: no job queued or running, at least
        ``reports`` SRs written (one per study sent so far: a study's report follows its last job),
        their result images drawn (they follow the SR) and no delivery pending, so that the next
        measurement does not share the cores with this one's reports."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get("/status")
            jobs, deliveries = status["jobs"], status["deliveries"]
            busy = (jobs.get("queued", 0) or jobs.get("running", 0) or deliveries.get("pending", 0)
                    or status["reports_drawing"])
            if not busy and status["reports"] >= reports:
                return
            time.sleep(0.2)
        raise TimeoutError(f"jobs, reports or deliveries still pending after {timeout}s")

    def peak_rss_by_process(self) -> dict[int, float]:
        """Peak resident memory (VmHWM, MB) of the serve process and of each process it started
        (the supervised worker), by pid, the serve process first."""
        peaks = {}
        for pid in process_tree(self.proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # exited meanwhile
                continue
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[pid] = round(kb / 1024, 1)
        if not peaks:
            raise RuntimeError("VmHWM not found")
        return peaks

    def peak_rss_mb(self) -> float:
        """The serve process's and its worker's peaks, summed: an upper bound of the whole plugin's
        peak, since each process's own peak may come at a different time."""
        return round(sum(self.peak_rss_by_process().values()), 1)

    def worker_peak_rss_mb(self) -> float | None:
        """The supervised worker process's own peak (``None`` when the plugin runs no child)."""
        children = [mb for pid, mb in self.peak_rss_by_process().items() if pid != self.proc.pid]
        return max(children) if children else None

    def close(self) -> None:
        stop(self.proc)


def start_plugin(work: Path, settings, pacs_port: int, timeout: float = 300.0) -> Plugin:
    """The bench's plugin: ``settings``' model and pipeline, quiet period 0, one PACS at ``pacs_port``;
    start-up time = spawn to ``/health`` saying the model is loaded."""
    # Imported here: the bench's HTTP load is not a peer, only its number of users is needed.
    from arcade_pacs.bench.load import USERS

    scp_port, admin_port = free_port(), free_port()
    model = settings.model
    config = write_config(work / "arcade.toml", {
        "data_dir": str(Path(settings.data_dir).resolve()),
        **loopback_config(
            work, scp_port, admin_port, Path(model.path).resolve(), [dimse_destination(pacs_port, name="bench")],
            model={"engine": model.engine, "threads": model.threads, "batch_size": model.batch_size,
                   "check_images": model.check_images, "litert_batch": model.litert_batch},
            pipeline={"study_quiet_seconds": 0, "workers": settings.pipeline.workers,
                      "keyframes": settings.pipeline.keyframes},
            # The load profile's users may all wait for /predict at once: queue them (the bounded
            # preparation limits memory) instead of answering 429, which the profile counts as failures.
            # They all come from one loopback address, as clients behind a reverse proxy do: the
            # per-client connection cap (admin security) is the proxy's to apply then (0 = none).
            admin={"predict_concurrency": USERS, "max_connections_per_client": 0},
        ),
    })
    upgrade_database(config)
    plugin = Plugin.serve(config, work / "serve.log", None, admin_port, timeout=timeout)
    started = time.monotonic() - plugin.startup_s
    try:
        plugin.wait_model_loaded(timeout - plugin.startup_s)
        plugin.startup_s = time.monotonic() - started
        wait_for_port(scp_port, 30, plugin.proc)
    except Exception:
        plugin.close()
        raise
    plugin.scp_port = scp_port
    plugin.status = plugin.get("/status")
    return plugin
