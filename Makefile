# pgwarden developer tasks. `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

# Node packages for peer servers and the MCP Inspector CLI (tests only).
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pgwarden demo

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pgwarden/__init__.py pgwarden/cli.py proxy server tests bench
	$(BIN)/mypy -p pgwarden

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/node/node_modules
