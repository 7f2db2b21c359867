"""The deployment files, checked as far as this machine allows (no container engine, no cluster):
the compose file against the Compose Specification's schema, the Kubernetes manifests against
Kubernetes' OpenAPI schemas (KEDA's CRDs have none offline: checked by structure, and their
query is run on a real PostgreSQL), and the image's commands run directly, with its environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from arcade_pacs.bench import peers
from arcade_pacs.cli import build_parser
from arcade_pacs.db import make_engine, migrate
from arcade_pacs.jobs import JobState
from tests.integration.reliability import Arrivals, admin_json, study_uid
from tests.project import PROJECT_ROOT, SHIPPED_MODEL

DOCKER = PROJECT_ROOT / "docker"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name) or (BIN / name if (BIN / name).exists() else None)
    assert found, f"{name} is not installed: `make install` installs the test extra"
    return str(found)


def _manifests() -> list[dict]:
    return [doc for path in sorted((DOCKER / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_file_follows_the_compose_specification():
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                          str(DOCKER / "compose.yaml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_splits_the_roles_and_publishes_only_what_it_must():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert "name" not in compose  # Compose v1 (Debian's docker-compose 1.29) rejects it
    services = compose["services"]
    assert services["worker"]["deploy"]["replicas"] == 2
    # CI runs the file as written with images made from Debian's packages: every image is a variable.
    assert all(s["image"].startswith("${") for s in services.values()), [s["image"] for s in services.values()]
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "no"), name
        if name != "migrate":
            assert "healthcheck" in service, name
            assert service["deploy"]["resources"]["limits"]["cpus"], name
        for port in service.get("ports", []):
            # DICOM only is public; host ports are variables with the documented defaults.
            assert port.startswith("127.0.0.1:") or port == "${ARCADE_SCP_PORT:-11112}:11112", (name, port)
    assert "ARCADE_ADMIN__TOKEN" not in str(compose)  # from the env file, never in the file
    for service in services.values():
        command = service.get("command")
        if command and command[0] == "arcade-pacs":
            build_parser().parse_args(command[1:])  # every command is one the CLI knows


def test_kubernetes_manifests_validate_and_keda_is_checked_by_structure():
    out = subprocess.run([_tool("kubernetes-validate"), "--strict", *map(str, sorted((DOCKER / "k8s").glob("*.yaml")))],
                         capture_output=True, text=True, timeout=300)
    lines = (out.stdout + out.stderr).splitlines()
    unvalidated = [line for line in lines if "Couldn't find schema" in line]
    assert out.returncode == 0, "\n".join(lines)
    # Only KEDA's custom resources lack an offline schema.
    assert unvalidated
    assert all("keda.sh/" in line for line in unvalidated)
    docs = _manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for needed in (("Deployment", "arcade-scp"), ("Service", "arcade-scp"), ("Deployment", "arcade-worker"),
                   ("ScaledObject", "arcade-worker"), ("PersistentVolumeClaim", "arcade-store"),
                   ("Secret", "arcade-secrets"), ("PodDisruptionBudget", "arcade-worker"), ("Job", "arcade-db-upgrade")):
        assert needed in kinds, needed
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by_name[("PersistentVolumeClaim", "arcade-store")]["spec"]["accessModes"] == ["ReadWriteMany"]
    worker = by_name[("Deployment", "arcade-worker")]["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["httpGet"]["path"] == "/health"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["resources"]["requests"]
    assert worker["resources"]["limits"]
    scaled = by_name[("ScaledObject", "arcade-worker")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "arcade-worker"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["authenticationRef"]["name"] in {n for _, n in kinds}
    for doc in docs:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            build_parser().parse_args(container["command"][1:])


def test_the_keda_query_counts_queued_jobs_on_the_real_schema():
    query = next(d for d in _manifests() if d["kind"] == "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    assert f"'{JobState.QUEUED.value}'" in query
    with peers.postgres_database() as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO studies (study_instance_uid, last_received_at, needs_report, report_attempts) "
                                  "VALUES ('1.2.3', now(), true, 0)"))
                for n, state in enumerate(["queued", "queued", "running", "done", "failed"]):
                    conn.execute(text(
                        "INSERT INTO instances (study_id, sop_instance_uid, sop_class_uid, series_instance_uid, "
                        "transfer_syntax_uid, path, size_bytes, calling_aet, received_at, generation) "
                        f"VALUES (1, '1.2.4.{n}', '1.2', '1.3', '1.2', '/x', 1, 'T', now(), 1)"))
                    conn.execute(text("INSERT INTO jobs (instance_id, state, attempts, created_at, available_at, generation) "
                                      f"VALUES ({n + 1}, '{state}', 0, now(), now(), 0)"))
                assert conn.execute(text(query)).scalar() == 3
        finally:
            engine.dispose()


def _dockerfile():
    """The runtime stage's ENV, HEALTHCHECK command and CMD."""
    text_ = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text_[text_.index("AS runtime"):]
    env, health, cmd = {}, None, None
    for line in runtime.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "HEALTHCHECK":
            health = yaml.safe_load(rest[rest.index("CMD") + 3:])
        elif word == "CMD":
            cmd = yaml.safe_load(rest)
    return env, health, cmd


@pytest.mark.slow
def test_the_image_commands_refuse_without_a_token_and_serve_with_one(tmp_path):
    env, health, cmd = _dockerfile()
    assert env["ARCADE_ADMIN__HOST"] == "0.0.0.0"
    assert "ARCADE_ADMIN__TOKEN" not in env
    scp_port, admin_port = peers.free_port(), peers.free_port()
    # The image's environment, its paths moved under this test's folder.
    run_env = {**os.environ, **env,
               "PATH": f"{BIN}:{os.environ['PATH']}",
               "ARCADE_CONFIG": str(PROJECT_ROOT / "config" / "arcade.toml"),
               "ARCADE_MODEL__PATH": str(SHIPPED_MODEL),
               "ARCADE_STORAGE__ROOT": str(tmp_path / "store"),
               "ARCADE_DATABASE__URL": f"sqlite:///{tmp_path / 'arcade.db'}",
               "ARCADE_DATA_DIR": str(tmp_path / "data"),
               "ARCADE_SCP__PORT": str(scp_port), "ARCADE_ADMIN__PORT": str(admin_port)}
    out = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "admin.token" in out.stderr, out.stdout + out.stderr
    run_env["ARCADE_ADMIN__TOKEN"] = "a-long-random-token-from-a-secret"
    log = (tmp_path / "image.log").open("w")
    proc = subprocess.Popen(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        peers.wait_for_port(admin_port, timeout=240, proc=proc)
        health = [part.replace(":8000/", f":{admin_port}/") for part in health]
        assert subprocess.run(health, env=run_env, timeout=30).returncode == 0
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/health", timeout=5).read()
        assert b'"database":"ok"' in body
        # The image's command with data_dir pointing nowhere serves the shipped int8 form (validated as its own model).
        request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/status",
                                         headers={"Authorization": f"Bearer {run_env['ARCADE_ADMIN__TOKEN']}"})
        model = json.load(urllib.request.urlopen(request, timeout=10))["model"]
        assert model["engine"] == "litert-int8", model
        assert not (tmp_path / "data").exists()
    finally:
        peers.stop(proc)


def _readme_scaling_commands() -> list[str]:
    """The commands of README's "Scaling out" block, comments dropped."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text[text.index("## Scaling out"):]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start:section.index("```", start)]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.slow
@pytest.mark.network
def test_the_readme_commands_run_every_role_on_one_host(tmp_path, rubo, tiny_model, pacs):
    """README's "Scaling out" commands as written, one config, every role on this host (the worker
    twice: "any number"): each starts and stays up (each once bound the admin port, and all but one
    exited with "[Errno 98] address already in use"), and a cine sent to the scp comes back as an SR."""
    commands = _readme_scaling_commands()
    assert commands[0] == "arcade-pacs db upgrade", commands
    assert {c.split("--role ")[1].split()[0] for c in commands[1:]} == {"scp", "worker", "admin"}, commands
    scp_port, admin_port = peers.free_port(), peers.free_port()
    with peers.postgres_database() as db:
        config = peers.write_config(tmp_path / "arcade.toml", peers.loopback_config(
            tmp_path, scp_port, admin_port, tiny_model, [peers.dimse_destination(pacs.port)], database={"url": db},
            model={"engine": "keras"}, admin={"token": "one-host-token"}))
        env = {**os.environ, "ARCADE_CONFIG": str(config)}  # one config for every role
        procs, probes = [], []
        try:
            for n, command in enumerate(commands):
                args = shlex.split(command)
                assert args[0] == "arcade-pacs"
                args[0] = str(BIN / "arcade-pacs")
                if args[1:3] == ["db", "upgrade"]:
                    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
                    assert out.returncode == 0, out.stdout + out.stderr
                    continue
                match = re.search(r"--probe-port (\d+)", command)
                if match and match.group(1) != "0":  # the documented port may be taken here: a free one
                    probe = peers.free_port()
                    args[args.index("--probe-port") + 1] = str(probe)
                    probes.append(probe)
                for copy in range(2 if "--role worker" in command else 1):
                    log = (tmp_path / f"role{n}.{copy}.log").open("w")
                    procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
            for port in (scp_port, admin_port, *probes):
                peers.wait_for_port(port, timeout=180)
            for port in (admin_port, *probes):
                assert admin_json(port, "/health")["database"] == "ok"
            logs = sorted(tmp_path.glob("role*.log"))
            peers.wait_until(lambda: sum("worker " in p.read_text() and ": model " in p.read_text() for p in logs) == 2,
                       timeout=180, message="two workers started")
            time.sleep(5)  # a role that cannot bind its port says so now (and stops)
            for log in logs:
                assert "address already in use" not in log.read_text(), log.read_text()[-2000:]
            assert all(p.poll() is None for p in procs), "\n".join(p.read_text()[-1500:] for p in logs)

            sent = peers.storescu(scp_port, rubo, options=["-xy"], timeout=300)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            peers.wait_until(lambda: study_uid(rubo) in Arrivals.read(pacs.folder).studies(), timeout=300,
                       message="the SR at the PACS")
            assert admin_json(admin_port, "/status", "one-host-token")["jobs"]["done"] == 1
            assert all(p.poll() is None for p in procs)
        finally:
            for proc in procs:
                peers.stop(proc)
