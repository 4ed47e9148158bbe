# pgwarden developer tasks. `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed

.PHONY: install system-deps demo test lint bench bench-quick bench-relay clean soak security-report

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

# Node packages for peer servers and the MCP Inspector CLI (tests only).
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium renders the audit report in a headless-browser test. Installed when we are root
# on a Debian-like machine (CI); elsewhere that one test skips and says why.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed (not root): the HTML report screenshot test will skip"; fi; \
	fi

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pgwarden demo

test: $(STAMP) $(NODE_STAMP) system-deps
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pgwarden/__init__.py pgwarden/cli.py proxy server tests bench
	$(BIN)/mypy -p pgwarden
	$(BIN)/mypy bench

# The benchmark suite writes BENCHMARKS.md and bench/plots/*.png (ARGS=--quick: under 2 minutes).
BENCH_STAMP := $(VENV)/.bench-installed
RELAY_VENV  := bench/.venv-relay

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,fast,bench]'
	touch $@

# mcp-proxy (PyPI), the no-policy relay baseline, pins mcp 1.x: it gets a venv of its own.
bench-relay:
	@test -x $(RELAY_VENV)/bin/mcp-proxy || { $(PYTHON) -m venv $(RELAY_VENV) && \
	  $(RELAY_VENV)/bin/pip install --quiet mcp-proxy==0.13.0; } || \
	  echo "mcp-proxy could not be installed: the benchmarks run without that baseline"

bench: $(BENCH_STAMP) $(NODE_STAMP) bench-relay
	$(BIN)/python -m bench $(ARGS)

bench-quick: $(BENCH_STAMP) $(NODE_STAMP) bench-relay
	$(BIN)/python -m bench --quick $(ARGS)

# Security and reliability suites with the long budgets (200 sessions for a minute, bigger fuzzing).
soak: $(STAMP)
	PGWARDEN_SOAK=1 $(BIN)/pytest -q tests/security tests/reliability

# Run both suites and rewrite the results table in SECURITY.md (add PGWARDEN_SOAK=1 for the long run).
security-report: $(STAMP)
	$(BIN)/python tests/security/security_report.py --json build/security-results.json

clean:
	rm -rf $(VENV) tests/node/node_modules
