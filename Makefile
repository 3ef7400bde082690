# The two commands of the README: `make demo` and `make test`. Both set up what is missing.
.PHONY: demo test lint bench dev system binaries

dev:
	@bash scripts/bootstrap.sh

demo: dev
	@bash scripts/demo.sh

test: dev system binaries
	@bash scripts/test.sh

system:
	@bash scripts/install-system-deps.sh
	@bash scripts/install-bench-deps.sh

binaries:
	@if [ -f scripts/build-binaries.sh ]; then bash scripts/build-binaries.sh; fi

lint: dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: dev system binaries
	.venv/bin/mlpulse bench
