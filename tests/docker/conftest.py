"""The container checks (``make docker-test``, the last step of ``make test``): the image built
from ``docker/Dockerfile`` on the base CI passes (``BASE``, default the base made from Debian's
packages by ``docker/ci/bases.sh``), then run alone and as the compose stack.

Every test here is marked ``docker``; ``make test`` runs the rest of the suite with
``-m "not docker"`` first, then these (a Docker daemon must answer: ``docker/ci/dockerd.sh``).
The figures they measure (build time, image size, memory per container) are written to
``var/docker-test/figures.json`` and printed as ``DOCKER ...`` lines (README quotes them).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from arcade_pacs.bench.peers import StoreSCP
from tests.docker.engine import DOCKER, MIB, docker, inspect
from tests.project import PROJECT_ROOT

BASE = os.environ.get("BASE", "arcade-ci/python:3.11-bookworm")
IMAGE = os.environ.get("ARCADE_IMAGE", "arcade-pacs:ci")
TOKEN = "docker-test-kq3V9xTzL0bWm2RyN8dA5cUeHf7JpG"  # the admin token rule: 32+ characters, 8+ distinct
FIGURES = PROJECT_ROOT / "var" / "docker-test" / "figures.json"


@pytest.fixture(scope="session")
def figures():
    """What the container tests measured, by check; written and printed when the session ends."""
    found: dict[str, dict] = {}
    yield found
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    for name, values in found.items():
        print("DOCKER", name, " ".join(f"{k}={v}" for k, v in values.items()))


@pytest.fixture(scope="session")
def image(figures) -> str:
    """The plugin's image, built as a user would build it (BuildKit), on CI's base."""
    out = docker("version", "--format", "{{.Server.Version}}", check=False)
    assert out.returncode == 0, (f"no Docker daemon answers {DOCKER}: run `make docker-test` "
                                 f"(docker/ci/dockerd.sh starts one)\n{out.stderr}")
    assert docker("image", "inspect", BASE, check=False).returncode == 0, (
        f"base image {BASE} is missing: docker/ci/bases.sh makes it")
    started = time.monotonic()
    # The daemon CI starts gives containers no NAT (docker/ci/dockerd.sh): pip reaches PyPI through
    # the host's network.
    docker("build", "--network", "host", "--build-arg", f"BASE={BASE}", "-f", "docker/Dockerfile",
           "-t", IMAGE, str(PROJECT_ROOT), timeout=3600, env={"DOCKER_BUILDKIT": "1"})
    size = int(inspect(IMAGE, "{{.Size}}"))
    figures["image"] = {"build_s": round(time.monotonic() - started, 1), "size_mb": round(size / 1e6),
                        "size_mib": round(size / MIB), "server": out.stdout.strip()}
    return IMAGE


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """DCMTK's storescp on the host (AE title PACS, every interface, one file per receipt): the
    PACS a container sends its SRs to, reached from inside at ``host.docker.internal``."""
    with StoreSCP(tmp_path_factory.mktemp("pacs"), notify=False, unique_names=True) as pacs:
        yield pacs
