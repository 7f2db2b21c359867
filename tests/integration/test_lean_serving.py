"""The plugin as a hospital installs it: a fresh copy of models/, no ARCADE data, no TensorFlow.

``arcade-pacs serve`` (role all: SCP and admin here, the worker in a child process) with
``data_dir`` an empty folder: it serves the shipped LiteRT form, verified at start; an instance
sent with DCMTK's storescu is analysed; neither process ever loaded TensorFlow or Keras (their
shared libraries are absent from the processes' memory maps). A form changed by one byte, or the
form of another model, is refused at start: ``model.engine = "litert"`` refuses to start,
``auto`` serves the reference engine and says why.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from arcade_pacs.bench.peers import (
    dimse_destination,
    free_port,
    loopback_config,
    process_tree,
    run,
    tool,
    upgrade_database,
    wait_until,
    write_config,
)
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.settings import PipelineSettings
from tests.project import SHIPPED_MODEL

pytestmark = [pytest.mark.network, pytest.mark.slow]

PACKAGE = ("arcade_stenosis.keras", "arcade_stenosis.json", "arcade_stenosis_golden.npz", "arcade_stenosis.tflite",
           "arcade_stenosis_int8.tflite", "arcade_stenosis_forms.json")
"""The shipped model package (what docker/Dockerfile copies)."""


def fresh_models(folder: Path) -> Path:
    folder.mkdir()
    for name in PACKAGE:
        shutil.copy(SHIPPED_MODEL.with_name(name), folder / name)
    return folder / SHIPPED_MODEL.name


def loaded_tensorflow(pid: int) -> list[str]:
    """Shared objects of TensorFlow or Keras mapped into process ``pid`` (empty: never imported)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines()
                   if "/site-packages/tensorflow/" in line or "/site-packages/keras/" in line})


def status(port: int) -> dict:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10))


def test_serve_without_data_uses_the_shipped_form_and_never_loads_tensorflow(tmp_path, storescp, start_plugin, rubo):
    model = fresh_models(tmp_path / "models")
    empty = tmp_path / "no-data"
    empty.mkdir()
    scp_port, admin_port = free_port(), free_port()
    config = write_config(tmp_path / "arcade.toml",
                          loopback_config(tmp_path, scp_port, admin_port, model, [dimse_destination(storescp.port)]))
    log = tmp_path / "plugin.log"
    plugin = start_plugin(config, log, scp_port, admin_port, env={"ARCADE_DATA_DIR": str(empty)})
    try:
        served = status(admin_port)["model"]
        # "auto": the int8 form, validated as a model of its own, under its own version
        assert served["engine"] == "litert-int8", f"{served}\n{log.read_text()[-3000:]}"
        assert "verified" in served["engine_reason"]
        assert served["version"] == ModelInfo.read(model).version + "-int8"
        sent = run([tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(scp_port), str(rubo)])
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(lambda: status(admin_port)["jobs"].get("done") == 1, timeout=300,
                   message=f"the instance analysed\n{log.read_text()[-3000:]}")
        assert status(admin_port)["results"] == 1
        pids = process_tree(plugin.pid)
        assert len(pids) >= 2, "the supervised worker process runs"
        worker = [pid for pid in pids if pid != plugin.pid]
        for pid in [plugin.pid, *worker]:
            assert loaded_tensorflow(pid) == [], f"process {pid} loaded TensorFlow/Keras"
        # the worker yields the CPU to the receiving parent (pipeline.worker_nice)
        nice = PipelineSettings().worker_nice
        assert nice > 0
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in worker] == [os.getpriority(os.PRIO_PROCESS, plugin.pid) + nice] * len(worker)
        assert list(empty.iterdir()) == [], "nothing was written to the data folder"
    finally:
        plugin.close()
    assert plugin.returncode in (0, -15), log.read_text()[-3000:]
    assert "Keras" not in log.read_text().split("served by", 1)[-1].split("\n", 1)[0]


def test_a_started_worker_has_no_tensorflow_module(tmp_path):
    """``serve --role worker`` imports what it serves with, and nothing of TensorFlow or Keras."""
    model = fresh_models(tmp_path / "models")
    config = write_config(tmp_path / "arcade.toml", {
        "storage": {"root": str(tmp_path / "store")},
        "database": {"url": f"sqlite:///{tmp_path / 'arcade.db'}"},
        "model": {"path": str(model), "engine": "litert"},
    })
    upgrade_database(config)
    probe = (
        "import sys, threading\n"
        "from arcade_pacs.service import Role, Service\n"
        "from arcade_pacs.settings import load_settings\n"
        f"service = Service(load_settings({str(config)!r}), Role.WORKER, http=False)\n"
        "service.start()\n"
        "service.model.get().predict(__import__('numpy').zeros((2, 224, 224, 3), 'float32'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')))\n"
        "print(service.model.get().engine_name)\n"
        "service.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env={"ARCADE_DATA_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    modules, engine = out.stdout.strip().splitlines()[-2:]
    assert engine == "litert", out.stdout
    assert modules == "[]", out.stdout


def _tamper(model: Path) -> None:
    form = model.with_suffix(".tflite")
    data = bytearray(form.read_bytes())
    data[len(data) // 3] ^= 0x01
    form.write_bytes(bytes(data))


def _another_model_s_form(model: Path) -> None:
    manifest = json.loads(model.with_name(model.stem + "_forms.json").read_text())
    manifest["digest"] = "0" * 64  # a form made from other weights
    model.with_name(model.stem + "_forms.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("spoil, expected, under_auto", [
    (_tamper, "changed or corrupt", "litert-int8"),  # the int8 form is checked on its own and still holds
    (_another_model_s_form, "another model", "keras"),  # the manifest vouches for no form of these weights
])
def test_a_spoilt_form_is_refused_at_start(tmp_path, start_plugin, spoil, expected, under_auto):
    model = fresh_models(tmp_path / "models")
    spoil(model)
    scp_port, admin_port = free_port(), free_port()
    values = {
        "scp": {"ae_title": "ARCADE", "host": "127.0.0.1", "port": scp_port},
        "storage": {"root": str(tmp_path / "store")},
        "database": {"url": f"sqlite:///{tmp_path / 'arcade.db'}"},
        "model": {"path": str(model), "engine": "litert"},
        "admin": {"host": "127.0.0.1", "port": admin_port},
    }
    config = write_config(tmp_path / "arcade.toml", values)
    upgrade_database(config)
    env = {"ARCADE_DATA_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    refused = subprocess.run([sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "serve", "--role", "admin"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to start" in refused.stderr, refused.stderr
    assert expected in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    # Under "auto" the next checked engine serves, and /status says why.
    values["model"]["engine"] = "auto"
    config = write_config(tmp_path / "arcade.toml", values)
    log = tmp_path / "auto.log"
    plugin = start_plugin(config, log, None, admin_port, role="admin", env=env, upgrade=False)
    try:
        served = status(admin_port)["model"]
        assert served["engine"] == under_auto, served
        assert expected in served["engine_reason"] or under_auto == "litert-int8", served
    finally:
        plugin.close()
