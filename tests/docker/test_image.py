"""The image alone, as a small site runs it: ``docker run`` with a token, the DICOM and admin ports
published, nothing mounted (no training data, no model folder), under a common memory limit.

In order: it runs as a non-root user, a fresh named volume on its store is writable, it refuses to
start without the admin token, it becomes healthy by Docker's own health check, it serves the
int8 LiteRT engine (validated as a model of its own), a cine sent with storescu to the published port is analysed and its SR reaches a
PACS on the host, its memory stays within the limit, and ``docker stop`` ends it cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

import pytest

from arcade_pacs.bench.peers import tool, wait_until
from tests.docker.conftest import TOKEN
from tests.docker.engine import MIB, MemorySampler, docker, inspect, logs, state, wait_healthy
from tests.integration.reliability import Arrivals, study_uid

pytestmark = pytest.mark.docker

MEMORY_LIMIT = "1536m"
"""A common container limit (and the serve + worker memory target of the original service)."""
MEMORY_LIMIT_BYTES = 1536 * MIB
MAX_IMAGE_MB = 800


@dataclass
class Container:
    """The plugin's image running as a container: its name, its ports published on loopback, and
    ``docker stats`` sampled from its start."""

    name: str
    scp_port: int
    admin_port: int
    sampler: MemorySampler
    started: float = field(default_factory=time.monotonic)


def test_the_image_runs_as_a_non_root_user(image):
    assert inspect(image, "{{.Config.User}}") == "10001:10001"
    uid, gid = docker("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip(), \
        docker("run", "--rm", "--entrypoint", "id", image, "-g").stdout.strip()
    assert (uid, gid) == ("10001", "10001")
    # The model package is read-only to the service (owned by root).
    out = docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                 "touch /opt/arcade/models/x 2>/dev/null && echo writable || echo read-only")
    assert out.stdout.strip() == "read-only"


def test_a_fresh_named_volume_on_the_store_is_writable(image):
    """What compose mounts: a named volume on /var/lib/arcade/store. It starts as a copy of the
    image's folder; a folder the image lacked was created owned by root (Permission denied)."""
    volume = f"arcade-ci-store-{os.getpid()}"
    try:
        out = docker("run", "--rm", "-v", f"{volume}:/var/lib/arcade/store", "--entrypoint", "sh", image, "-c",
                     "mkdir /var/lib/arcade/store/.incoming && stat -c %u /var/lib/arcade/store", check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip() == "10001", out.stdout + out.stderr
    finally:
        docker("volume", "rm", "-f", volume, check=False)


def test_it_refuses_to_start_without_the_admin_token(image):
    out = docker("run", "--rm", image, check=False, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refusing to start" in out.stderr
    assert "ARCADE_ADMIN__TOKEN" in out.stderr


def test_the_image_is_lean(image, figures):
    """No TensorFlow and no training extras in the serving image (the lean-serving issue)."""
    size_mb = int(inspect(image, "{{.Size}}")) / 1e6
    assert size_mb <= MAX_IMAGE_MB, f"image is {size_mb:.0f} MB (at most {MAX_IMAGE_MB})"


@pytest.fixture(scope="module")
def plugin(image, pacs):
    """``docker run`` the image's own command (role all) with a token, ports published on
    loopback, the host's storescp as its PACS; followed by ``docker stats`` from the start."""
    name = f"arcade-ci-single-{os.getpid()}"
    sampler = MemorySampler().start()
    docker("run", "-d", "--name", name,
           "--memory", MEMORY_LIMIT, "--memory-swap", MEMORY_LIMIT,
           "-p", "127.0.0.1::11112", "-p", "127.0.0.1::8000",
           "--add-host", "host.docker.internal:host-gateway",
           "-e", f"ARCADE_ADMIN__TOKEN={TOKEN}",
           "-e", 'ARCADE_SCP__ALLOWED_CALLING_AETS=["STORESCU"]',
           "-e", "ARCADE_PIPELINE__STUDY_QUIET_SECONDS=2",
           "-e", 'ARCADE_DESTINATIONS=[{"name": "pacs", "ae_title": "PACS", '
                 f'"host": "host.docker.internal", "port": {pacs.port}}}]',
           image)
    ports = {}
    for inside in (11112, 8000):
        published = docker("port", name, f"{inside}/tcp").stdout.split()[0]
        ports[inside] = int(published.rsplit(":", 1)[1])
    try:
        yield Container(name, ports[11112], ports[8000], sampler)
    finally:
        sampler.stop()
        print(logs(name)[-3000:])
        docker("rm", "-f", "-v", name, check=False)


def _admin(plugin, path: str):
    request = urllib.request.Request(f"http://127.0.0.1:{plugin.admin_port}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    return json.load(urllib.request.urlopen(request, timeout=10))


def test_it_becomes_healthy(plugin, figures):
    seconds = wait_healthy([plugin.name], timeout=600)
    figures["single"] = {"healthy_after_s": round(seconds, 1)}


def test_it_serves_the_int8_engine_without_data(plugin):
    out = docker("exec", plugin.name, "sh", "-c", 'test ! -e "$ARCADE_DATA_DIR" && echo no-data')
    assert out.stdout.strip() == "no-data"
    model = _admin(plugin, "/status")["model"]
    assert model["engine"] == "litert-int8", f"{model}\n{logs(plugin.name)[-2000:]}"
    assert model["version"].endswith("-int8"), model


def test_a_cine_sent_to_the_published_port_is_analysed_and_its_sr_reaches_the_pacs(plugin, pacs, rubo, figures):
    sent = time.monotonic()
    out = host_storescu(plugin.scp_port, rubo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Received Store Response (Success)" in out.stdout + out.stderr, out.stdout + out.stderr
    study = study_uid(rubo)
    wait_until(lambda: study in Arrivals.read(pacs.folder).studies(), timeout=900, interval=2,
               message=f"the SR at the PACS\n{logs(plugin.name)[-3000:]}")
    # The destination gets every default object: the SR and the result image (Secondary Capture).
    wait_until(lambda: _admin(plugin, "/status")["deliveries"].get("sent") == 2, timeout=120, interval=1,
               message="the SR and the result image delivered")
    status = _admin(plugin, "/status")
    assert status["jobs"].get("done") == 1, status
    assert status["results"] == 1, status
    assert status["deliveries"].get("sent") == 2, status
    text = logs(plugin.name)
    assert "died" not in text, text[-3000:]  # the supervised worker was never killed
    figures["single"]["sr_after_s"] = round(time.monotonic() - sent, 1)


def host_storescu(port: int, path):
    """DCMTK's storescu on the host, as a modality sends, to the published SCP port."""
    return subprocess.run([tool("storescu"), "-v", "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(port),
                           str(path)], capture_output=True, text=True, timeout=300)


def test_its_memory_stays_within_the_limit(plugin, figures):
    """SCP, admin and the supervised worker together, through start-up and one analysis: under the
    limit with a margin, never killed by the kernel."""
    time.sleep(3)  # one more sample after the analysis
    peak = plugin.sampler.peak.get(plugin.name, 0)
    limit = plugin.sampler.limit.get(plugin.name, 0)
    figures["single"].update(memory_limit_mib=round(limit / MIB), peak_mib=round(peak / MIB),
                             idle_after_mib=round(plugin.sampler.last.get(plugin.name, 0) / MIB))
    assert inspect(plugin.name, "{{.HostConfig.Memory}}") == str(MEMORY_LIMIT_BYTES)
    assert limit == MEMORY_LIMIT_BYTES, f"{limit=} after {plugin.sampler.polls} polls"  # the limit applies
    assert state(plugin.name)["OOMKilled"] is False
    assert "exit -9" not in logs(plugin.name)
    assert 0 < peak <= 0.85 * limit, f"peak {peak / MIB:.0f} MiB of {limit / MIB:.0f} MiB"


def test_docker_stop_ends_it_cleanly(plugin, figures):
    started = time.monotonic()
    docker("stop", "-t", "60", plugin.name, timeout=120)
    figures["single"]["stop_s"] = round(time.monotonic() - started, 1)
    st = state(plugin.name)
    text = logs(plugin.name)
    assert st["ExitCode"] == 0, text[-3000:]
    assert "Fatal Python error" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
