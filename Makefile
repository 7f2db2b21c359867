# ARCADE PACS: `make run` starts the plugin, `make test` runs the whole suite (what CI runs),
# the container checks last (`make docker-test`), `make test-fast` the unit tests that start no
# peer and train nothing (the edit-test loop).
# All install what they need first (`make install`, idempotent).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests start as real peers: command (or file) -> package. The OHIF test
# needs Orthanc's DICOMweb plugin, Debian's chromium (driven by Python playwright; never a
# browser that playwright downloads) and npm (to pack the pinned @ohif/app once).
DEBIAN_TOOLS := storescu:dcmtk echoscu:dcmtk storescp:dcmtk dsrdump:dcmtk dciodvfy:dicom3tools Orthanc:orthanc \
                /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb chromium:chromium npm:npm openssl:openssl \
                tesseract:tesseract-ocr

.PHONY: install system-deps postgres run lint test test-fast docker-deps docker-test screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { \
	  echo "installing Debian's python3-venv"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

system-deps:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -e $$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$(echo $$missing | tr ' ' '\n' | sort -u); \
	fi

# PostgreSQL 15 on 127.0.0.1:5432, trust authentication for local TCP (user postgres; databases
# postgres and test): the tests create and drop their own databases in it. Installed and started
# from Debian's packages when pg_isready finds none (CI machines are throwaway; trust is local-only).
postgres:
	@if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then echo "PostgreSQL is up on 127.0.0.1:5432"; else \
	  command -v pg_ctlcluster >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql postgresql-client; }; \
	  ver=$$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1); \
	  [ -n "$$ver" ] || { ver=$$(ls /usr/lib/postgresql | sort -n | tail -1); $(SUDO) pg_createcluster $$ver main; }; \
	  hba=/etc/postgresql/$$ver/main/pg_hba.conf; \
	  grep -q "^host all all 127.0.0.1/32 trust" $$hba || \
	    $(SUDO) sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' $$hba; \
	  $(SUDO) pg_ctlcluster $$ver main start || $(SUDO) pg_ctlcluster $$ver main reload; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	  pg_isready -h 127.0.0.1 -p 5432; \
	fi
	@psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 || \
	  psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"

run: install
	$(BIN)/arcade-pacs db upgrade
	$(BIN)/arcade-pacs serve

# The checked rules: import layers (pyproject's [tool.importlinter]) and lint (ruff).
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .

test: install system-deps postgres lint
	$(BIN)/python -m pytest -q -m "not docker" --durations=30
	$(MAKE) docker-test

test-fast: install postgres lint
	$(BIN)/python -m pytest -q -m "not network and not slow" tests/unit

# The container checks (tests/docker): the image built and run alone, then the compose stack.
# Debian's docker.io (daemon, and a client with BuildKit built in: preferred to any other
# `docker` on PATH), Compose v1 and mmdebstrap; a daemon started when none answers, one that
# leaves the host's forwarding as found (docker/ci/dockerd.sh: started and stopped here); the
# base images made from Debian's packages, no registry needed (docker/ci/bases.sh, kept once made).
DOCKER_TOOLS := dockerd:docker.io docker-compose:docker-compose mmdebstrap:mmdebstrap storescu:dcmtk
DOCKER  ?= $(shell [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)
COMPOSE ?= docker-compose

docker-deps:
	@missing=""; for pair in $(DOCKER_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$(echo $$missing | tr ' ' '\n' | sort -u); \
	fi

docker-test: install docker-deps
	@DOCKER=$(DOCKER) docker/ci/dockerd.sh start
	@status=0; \
	DOCKER=$(DOCKER) docker/ci/bases.sh && \
	DOCKER=$(DOCKER) COMPOSE="$(COMPOSE)" $(BIN)/python -m pytest -q -m docker tests/docker || status=$$?; \
	cat var/docker-test/figures.json 2>/dev/null; \
	DOCKER=$(DOCKER) docker/ci/dockerd.sh stop || status=1; \
	exit $$status

# The dashboard's screenshots in docs/ (README): a real cine sent by storescu to `arcade-pacs
# serve`, each page photographed by headless chromium.
screenshots: install system-deps
	$(BIN)/python -m tests.integration.screenshots docs/dashboard

clean:
	rm -rf var .pytest_cache
