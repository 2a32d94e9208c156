# image-gen: the two commands of the README.
#   make demo   installs into .venv and runs the staged pipeline on the example briefs (offline simulator,
#               embedded SQLite registry), approves one run, and writes the before/after report.
#               It ends by printing how to open the review studio (image-gen serve) on the demo workspace.
#   make test   installs with the test extras (torch==2.13.0 CPU first) and Debian's chromium (skipped when it is
#               on PATH), and runs lint, types and the tests (in parallel, then the timing-sensitive ones alone).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WS ?= demo

.PHONY: demo test install install-test system-packages chromium postgresql lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

# Debian's packages (apt) install in the background while pip installs torch==2.13.0 first, then the extras:
# neither needs the other, and on a clean CI machine apt's download and unpacking then costs no wall time.
install-test: $(BIN)/python
	@log=$$(mktemp); $(MAKE) --no-print-directory system-packages >"$$log" 2>&1 & apt=$$!; \
	$(BIN)/pip install -q torch==2.13.0 && $(BIN)/pip install -q -e '.[local,dev]'; pip=$$?; \
	wait $$apt; apt=$$?; cat "$$log"; rm -f "$$log"; \
	[ $$pip -eq 0 ] || { echo "pip install failed ($$pip)"; exit 1; }; \
	[ $$apt -eq 0 ] || { echo "apt-get install of chromium/postgresql failed ($$apt)"; exit 1; }

# Debian's packages the tests drive, installed only when missing, with one `apt-get update` for both:
# chromium (the studio's browser tests drive it through Playwright; never `playwright install`) and postgresql
# (the registry, budget and race tests also run on a throwaway PostgreSQL server).
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		missing="$$missing postgresql"; \
	[ -z "$$missing" ] || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$missing; }

chromium postgresql: system-packages

demo: install
	@# exit 1 (a brief whose final asset failed QA) is a result the report measures; exit 2 stops the demo
	$(BIN)/image-gen run --config examples/staged.toml --prompt-file examples/prompts.txt --simulate \
		--workspace $(WS) --out-dir $(WS)/out || [ $$? -eq 1 ]
	$(BIN)/image-gen approve $$($(BIN)/image-gen runs list --status awaiting_approval --limit 1 --json \
		--workspace $(WS) | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["run_id"])') \
		--note "approved in the demo" --workspace $(WS) --out-dir $(WS)/out
	$(BIN)/image-gen report --compare examples/baseline.toml examples/staged.toml \
		--prompt-file examples/prompts.txt --simulate --workspace $(WS) --out $(WS)/report
	@echo "report: $(WS)/report/report.html"
	@echo "review studio: $(BIN)/image-gen serve --workspace $(WS)   then open http://127.0.0.1:8765/"
	@echo "  (sign in with the access token it prints; approve, re-run, compare and read the report there)"

lint:
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy

# Lint and types, then the tests in two phases. ruff and mypy run beside the first phase: every test not marked
# `timing`, in parallel on TEST_WORKERS xdist workers (loadgroup keeps the tests of an expensive shared fixture on one
# worker, see tests/conftest.py). Then the `timing` tests (wall time and short deadlines asserted, kills, Ctrl-C) run
# alone in one process: beside other tests on CI's 2 cores they were starved of CPU (a 0.5 s deadline measured at
# 1.5 s). Every part always runs; make test fails if any of them fails. TEST_WORKERS=0: the first phase in one process.
TEST_WORKERS ?= 2

test: install-test
	@log=$$(mktemp); $(MAKE) --no-print-directory lint >"$$log" 2>&1 & lint=$$!; \
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not timing"; parallel=$$?; \
	wait $$lint; lint=$$?; cat "$$log"; rm -f "$$log"; \
	$(BIN)/pytest -q -m timing; serial=$$?; \
	[ $$lint -eq 0 ] && [ $$parallel -eq 0 ] && [ $$serial -eq 0 ] || \
		{ echo "make test failed: lint $$lint, tests in parallel $$parallel, timing tests $$serial"; exit 1; }

bench:
	$(BIN)/python benchmarks/bench_cli_startup.py
	$(BIN)/python benchmarks/bench_qa.py
	$(BIN)/python benchmarks/bench_tiling.py
	$(BIN)/python benchmarks/bench_local_tiling.py
	$(BIN)/python benchmarks/bench_studio.py
	$(BIN)/python benchmarks/bench_throughput.py

clean:
	rm -rf $(WS) .pytest_cache .mypy_cache .ruff_cache
