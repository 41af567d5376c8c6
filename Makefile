# Every target sets up what it needs, idempotently: venv, Docker engine, base image.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST  := $(BIN)/python -m pytest
# The engine that setup prepares and the engine tests run on: docker or podman.
ENGINE  ?= docker
export ENGINE

.PHONY: setup engine podman base-image test-podman registry-package slurm-package demo test test-unit test-engine test-slow lint fmt ci bench clean docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,docs]' >$(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

# Docker is always set up (the base image is built with it); Podman too with ENGINE=podman.
engine:
	@bash scripts/ensure-engine.sh
	@if [ "$(ENGINE)" = podman ]; then bash scripts/ensure-podman.sh; fi

podman:
	@bash scripts/ensure-podman.sh

base-image: engine
	@ENGINE=docker bash scripts/ensure-base-image.sh
	@if [ "$(ENGINE)" = podman ]; then bash scripts/ensure-base-image.sh; fi

registry-package:
	@bash scripts/ensure-registry-package.sh

# The Slurm tests start their own one-node cluster; this installs its packages.
slurm-package:
	@bash scripts/ensure-slurm.sh

# The browser tests (tests/browser/) open reports in Debian's headless Chromium.
.PHONY: chromium
chromium:
	@bash scripts/ensure-chromium.sh
test: chromium

setup: $(STAMP) base-image

demo: setup
	@CONTAINEREXEC_ENGINE=$(ENGINE) bash scripts/demo.sh

test: setup registry-package slurm-package lint docs
	@CONTAINEREXEC_REQUIRE_DOCKER=1 CONTAINEREXEC_TEST_ENGINE=$(ENGINE) $(PYTEST) -q

# What CI runs on Podman after the whole suite on Docker: the engine contract and the
# tests marked `podman` (a representative subset; `make test ENGINE=podman` runs all).
test-podman: $(STAMP) registry-package slurm-package
	@$(MAKE) --no-print-directory base-image ENGINE=podman
	@CONTAINEREXEC_REQUIRE_DOCKER=1 CONTAINEREXEC_TEST_ENGINE=podman $(PYTEST) -q -m podman \
		tests/engine tests/examples

test-unit: $(STAMP)
	@$(PYTEST) -q tests/unit

test-engine: setup registry-package slurm-package
	@CONTAINEREXEC_REQUIRE_DOCKER=1 CONTAINEREXEC_TEST_ENGINE=$(ENGINE) $(PYTEST) -q tests/engine tests/examples

# The memory-growth measurements (marked slow): minutes; `make test` runs them too.
test-slow: setup
	@CONTAINEREXEC_REQUIRE_DOCKER=1 $(PYTEST) -q -m slow tests/slow

lint: $(STAMP)
	@$(BIN)/ruff check containerexec tests bench
	@$(BIN)/ruff format --check containerexec tests bench
	@$(BIN)/mypy
	@$(BIN)/lint-imports --no-cache

fmt: $(STAMP)
	@$(BIN)/ruff format containerexec tests bench
	@$(BIN)/ruff check --fix containerexec tests bench

ci: test test-podman

# The site's home page is the README with its links made relative to docs/.
docs: $(STAMP)
	@sed -e 's#(docs/#(#g' -e 's#(ARCHITECTURE.md)#(architecture.md)#g' README.md > docs/index.md
	@NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: setup
	@$(BIN)/python bench/shards.py

clean:
	rm -rf $(VENV) .containerexec demo-out
