# scfchain: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := proto/types.proto proto/ledger.proto proto/peer.proto

.PHONY: install chromium demo test test-fast lint proto proto-check bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "scfchain needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing scfchain and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install --disable-pip-version-check --upgrade pip > $(VENV)/install.log 2>&1
	@# plyvel ships manylinux wheels with LevelDB inside; where no wheel fits, build it
	@# against the system's LevelDB (installed non-interactively when apt-get is available).
	@$(PY) -m pip install --disable-pip-version-check -e '.[dev]' >> $(VENV)/install.log 2>&1 || { \
	  command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    libleveldb-dev >> $(VENV)/install.log 2>&1 && \
	  $(PY) -m pip install --no-binary plyvel -e '.[dev]' >> $(VENV)/install.log 2>&1; } || { \
	  tail -30 $(VENV)/install.log; echo "install failed; see $(VENV)/install.log"; exit 1; }
	@$(PY) -c 'import plyvel, grpc, cryptography' || { echo "install failed"; exit 1; }
	@touch $(STAMP)

# The web console's browser tests (tests/browser) drive Debian's Chromium and chromedriver;
# installed non-interactively where apt-get is available, never downloaded by the tests.
chromium:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  command -v apt-get >/dev/null && { \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
	      > $${TMPDIR:-/tmp}/scfchain-chromium-install.log 2>&1 || { \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >> $${TMPDIR:-/tmp}/scfchain-chromium-install.log 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
	      >> $${TMPDIR:-/tmp}/scfchain-chromium-install.log 2>&1; }; } && rm -f $${TMPDIR:-/tmp}/scfchain-chromium-install.log; } || \
	  echo "chromium and chromium-driver are not installed (see $${TMPDIR:-/tmp}/scfchain-chromium-install.log): the browser tests will be skipped"

install: $(STAMP) chromium

demo: $(STAMP)
	$(PY) -m node.ops.cli demo

test: $(STAMP) chromium
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m 'not e2e and not soak'

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)

# Fails when the committed generated modules differ from what the .proto files give.
proto-check: $(STAMP)
	@rm -rf .proto-check && mkdir -p .proto-check
	@$(PY) -m grpc_tools.protoc -I. --python_out=.proto-check --grpc_python_out=.proto-check \
	  --pyi_out=.proto-check $(PROTOS)
	@for f in .proto-check/proto/*; do \
	  cmp -s $$f proto/$$(basename $$f) || { echo "stale: proto/$$(basename $$f); run make proto"; \
	    rm -rf .proto-check; exit 1; }; done
	@rm -rf .proto-check && echo "generated proto modules are fresh"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
