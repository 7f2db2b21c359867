# ARCADE PACS: `make run` starts the plugin, `make test` runs the whole suite (what CI runs),
# `make test-fast` the unit tests that start no peer and train nothing (the edit-test loop).
# All install what they need first (`make install`, idempotent).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests start as real DICOM peers: command -> package.
DEBIAN_TOOLS := storescu:dcmtk echoscu:dcmtk storescp:dcmtk dsrdump:dcmtk dciodvfy:dicom3tools Orthanc:orthanc openssl:openssl

.PHONY: install system-deps run lint test test-fast clean

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
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$(echo $$missing | tr ' ' '\n' | sort -u); \
	fi

run: install
	$(BIN)/arcade-pacs serve

# The checked rules: import layers (pyproject's [tool.importlinter]) and lint (ruff).
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check arcade_pacs tests

test: install system-deps lint
	$(BIN)/python -m pytest -q

test-fast: install lint
	$(BIN)/python -m pytest -q -m "not network and not slow" tests/unit

clean:
	rm -rf var .pytest_cache
