"""The compose stack (``docker/compose.yaml``) as written, with CI's images: PostgreSQL, migrate,
scp, two workers, admin and Orthanc wired both ways.

In order: the file is valid for Compose v1; the stack comes up healthy with its limits applied; a
study Orthanc forwards to the scp comes back to Orthanc as an SR; a worker container killed
(``docker kill``) mid-analysis loses nothing; ``--scale worker=3`` works; every container stayed
within its memory limit; ``docker stop`` ends every container cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from arcade_pacs.bench.peers import free_port, tool, wait_until
from tests.docker.conftest import TOKEN
from tests.docker.engine import COMPOSE, MIB, MemorySampler, docker, inspect, logs, state, wait_healthy
from tests.project import PROJECT_ROOT

pytestmark = pytest.mark.docker

COMPOSE_FILE = PROJECT_ROOT / "docker" / "compose.yaml"
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", "arcade-ci/postgres:15-bookworm")
ORTHANC_IMAGE = os.environ.get("ORTHANC_IMAGE", "arcade-ci/orthanc:bookworm")
LEASE_S = 10
PAUSED_SOP_UID = generate_uid()
"""The instance whose analysis pauses (``faults.delay_at``), so the test kills its worker while it runs."""
PAUSE_S = 20
ARCADE_SERVICES = ("scp", "worker", "admin")
MEMORY_MARGIN = 0.8
"""A container's peak stays under this share of its limit."""


class Stack:
    """One compose project of ``docker/compose.yaml``, driven by the Compose command line."""

    def __init__(self, folder: Path, image: str):
        self.project = f"arcade-ci-{os.getpid()}"
        self.scp_port, self.admin_port, self.orthanc_port = free_port(), free_port(), free_port()
        self.stow_port = free_port()
        env_file = folder / "arcade.env"
        env_file.write_text("\n".join([
            f"ARCADE_ADMIN__TOKEN={TOKEN}",
            "POSTGRES_PASSWORD=docker-test-password",
            "ARCADE_DATABASE__URL=postgresql+psycopg://arcade:docker-test-password@postgres:5432/arcade",
            f"ARCADE_PIPELINE__LEASE_S={LEASE_S}",
            "ARCADE_PIPELINE__STUDY_QUIET_SECONDS=2",
            "ARCADE_OUTBOX__BACKOFF_INITIAL_S=2",
            "ARCADE_OUTBOX__BACKOFF_CAP_S=5",
            "ARCADE_FAULTS__DELAY_AT=analysis",
            f"ARCADE_FAULTS__DELAY_KEY={PAUSED_SOP_UID}",
            f"ARCADE_FAULTS__DELAY_S={PAUSE_S}",
        ]) + "\n")
        self.env = {**os.environ, "ARCADE_IMAGE": image, "POSTGRES_IMAGE": POSTGRES_IMAGE,
                    "ORTHANC_IMAGE": ORTHANC_IMAGE, "ARCADE_ENV_FILE": str(env_file),
                    "ARCADE_SCP_PORT": str(self.scp_port), "ARCADE_ADMIN_PORT": str(self.admin_port),
                    "ARCADE_STOW_PORT": str(self.stow_port),
                    "ORTHANC_HTTP_PORT": str(self.orthanc_port)}
        self.folder = folder

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*COMPOSE, "--compatibility", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=PROJECT_ROOT)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        return out

    def containers(self, service: str) -> list[str]:
        """Container names of a service (running or not)."""
        ids = self.compose("ps", "-q", service).stdout.split()
        return sorted(inspect(i, "{{.Name}}").lstrip("/") for i in ids)

    def running(self) -> list[str]:
        return [c for s in ("postgres", *ARCADE_SERVICES, "orthanc") for c in self.containers(s)]

    def sql(self, query: str) -> list[list[str]]:
        (postgres,) = self.containers("postgres")
        out = docker("exec", postgres, "psql", "-U", "arcade", "-d", "arcade", "-tAF", "\t", "-c", query)
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def orthanc(self, path: str, body: bytes | None = None, method: str | None = None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.orthanc_port}{path}", data=body, method=method)
        return json.load(urllib.request.urlopen(request, timeout=60))

    def sr_series(self, orthanc_study: str) -> list[dict]:
        series = self.orthanc(f"/studies/{orthanc_study}/series")
        return [s for s in series if s["MainDicomTags"].get("Modality") == "SR"]


@pytest.fixture(scope="module")
def stack(image, tmp_path_factory, figures):
    stack = Stack(tmp_path_factory.mktemp("compose"), image)
    stack.sampler = MemorySampler().start()
    try:
        started = time.monotonic()
        stack.compose("up", "-d", "--no-build", timeout=900)
        stack.up_s = time.monotonic() - started
        yield stack
    finally:
        stack.sampler.stop()
        log = stack.folder / "stack.log"
        log.write_text(stack.compose("logs", "--no-color", check=False).stdout)
        print(f"compose logs: {log}")
        stack.compose("down", "-v", "--remove-orphans", "-t", "30", check=False)


def _limits() -> dict[str, int]:
    """Each service's memory limit in bytes (Compose's units are binary: 512m, 2g)."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    limits = {}
    for name, s in services.items():
        if "deploy" in s:
            value = s["deploy"]["resources"]["limits"]["memory"].lower().removesuffix("b")
            limits[name] = int(value[:-1]) * units[value[-1]]
    return limits


def test_the_compose_file_is_valid_for_compose_v1(image, tmp_path):
    """Compose v1 (Debian's docker-compose 1.29) reads the file as written (it rejects `name:`)."""
    stack = Stack(tmp_path, image)
    out = stack.compose("config")
    config = yaml.safe_load(out.stdout)
    assert config["services"]["worker"]["image"] == image
    assert config["services"]["postgres"]["image"] == POSTGRES_IMAGE


def test_the_stack_comes_up_healthy_with_its_limits_applied(stack, figures):
    names = stack.running()
    seconds = wait_healthy(names, timeout=900)
    (migrate,) = stack.containers("migrate")
    assert state(migrate)["ExitCode"] == 0, logs(migrate)
    assert len(stack.containers("worker")) == 2  # deploy.replicas
    limits = _limits()
    for service in ("postgres", *ARCADE_SERVICES, "orthanc"):
        for name in stack.containers(service):
            assert int(inspect(name, "{{.HostConfig.Memory}}")) == limits[service], (name, service)
            assert int(inspect(name, "{{.HostConfig.NanoCpus}}")) > 0, name
    figures["compose"] = {"up_s": round(stack.up_s, 1), "healthy_after_s": round(stack.up_s + seconds, 1)}


def test_a_study_forwarded_by_orthanc_comes_back_as_an_sr(stack, rubo, figures):
    started = time.monotonic()
    uploaded = stack.orthanc("/instances", rubo.read_bytes())
    # Orthanc C-STOREs it to the plugin's SCP (the modality "arcade" in the compose file).
    stack.orthanc("/modalities/arcade/store", json.dumps({"Resources": [uploaded["ID"]], "Synchronous": True}).encode())
    wait_until(lambda: stack.sr_series(uploaded["ParentStudy"]), timeout=900, interval=2,
               message="the SR back at Orthanc")
    figures.setdefault("compose", {})["sr_after_s"] = round(time.monotonic() - started, 1)


def _copy_with_new_uids(source: Path, target: Path, sop_uid: str | None = None) -> str:
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.save_as(target, enforce_file_format=True)
    return ds.StudyInstanceUID


def test_a_worker_killed_mid_analysis_loses_nothing(stack, rubo, tmp_path, figures):
    path = tmp_path / "cine.dcm"
    study = _copy_with_new_uids(rubo, path, sop_uid=PAUSED_SOP_UID)  # its analysis pauses: caught while running
    out = subprocess.run([tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(stack.scp_port),
                          str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (instance_id,) = stack.sql(f"SELECT i.id FROM instances i WHERE i.sop_instance_uid = "
                               f"'{pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID}'")[0]
    hosts = {inspect(name, "{{.Config.Hostname}}"): name for name in stack.containers("worker")}

    def running_worker():
        rows = stack.sql(f"SELECT worker FROM jobs WHERE instance_id = {instance_id} AND state = 'running'")
        return rows and hosts.get(rows[0][0].split(":", 1)[0])

    victim = wait_until(running_worker, timeout=300, interval=0.2, message="the job running on a worker")
    docker("kill", victim)
    killed = time.monotonic()

    def sr_at_orthanc():
        found = stack.orthanc("/tools/find", json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study}}).encode())
        return found and stack.sr_series(found[0])

    wait_until(sr_at_orthanc, timeout=900, interval=2, message="the killed worker's study's SR at Orthanc")
    (state_, attempts), = stack.sql(f"SELECT state, attempts FROM jobs WHERE instance_id = {instance_id}")
    assert state_ == "done", (state_, attempts)
    # Taken over after the lease, alone; the killed run shared its process with a second analysis
    # thread, so the death is not charged to this job (jobs.claim_job: only a run alone is).
    assert int(attempts) == 1, (state_, attempts)
    assert stack.sql(f"SELECT count(*) FROM results WHERE instance_id = {instance_id}") == [["1"]]
    assert stack.sql("SELECT count(*) FROM jobs WHERE state <> 'done'") == [["0"]]
    per_study = stack.sql("SELECT study_id, count(*) FROM reports GROUP BY study_id")
    assert per_study, per_study
    assert all(n == "1" for _, n in per_study), per_study
    figures.setdefault("compose", {}).update(sr_after_kill_s=round(time.monotonic() - killed, 1),
                                             killed_worker_restarts=int(inspect(victim, "{{.RestartCount}}")))


def test_scale_worker_to_three(stack):
    stack.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=3", timeout=900)
    workers = stack.containers("worker")
    assert len(workers) == 3
    wait_healthy(workers, timeout=900)
    limit = _limits()["worker"]
    assert all(int(inspect(w, "{{.HostConfig.Memory}}")) == limit for w in workers)


def test_every_container_stayed_within_its_memory_limit(stack, figures):
    limits = _limits()
    problems, memory = [], {}
    for service in ("postgres", *ARCADE_SERVICES, "orthanc"):
        for name in stack.containers(service):
            peak, limit = stack.sampler.peak.get(name, 0), stack.sampler.limit.get(name, 0)
            memory[name.removeprefix(stack.project).strip("_-")] = (
                f"{stack.sampler.last.get(name, 0) / MIB:.0f}/{peak / MIB:.0f}/{limit / MIB:.0f}")
            if limit != limits[service] or not 0 < peak <= MEMORY_MARGIN * limit or state(name)["OOMKilled"]:
                problems.append(f"{name}: peak {peak / MIB:.0f} MiB of {limit / MIB:.0f} MiB")
    figures["compose_memory_mib_last_peak_limit"] = memory
    assert not problems, problems


def test_docker_stop_ends_every_container_cleanly(stack, figures):
    running = [name for name in stack.running() if state(name)["Running"]]
    assert len(running) >= 7, running  # postgres, scp, three workers, admin, orthanc
    started = time.monotonic()
    stack.compose("stop", timeout=600)
    figures.setdefault("compose", {})["stop_s"] = round(time.monotonic() - started, 1)
    for name in running:
        text = logs(name)
        assert state(name)["ExitCode"] == 0, f"{name}: exit {state(name)['ExitCode']}\n{text[-3000:]}"
        assert "Fatal Python error" not in text, f"{name}\n{text[-3000:]}"
        assert "Traceback" not in text, f"{name}\n{text[-3000:]}"
