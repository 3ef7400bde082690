# The two commands of the README: `make demo` and `make test`. Both set up what is missing.
.PHONY: demo test lint bench dev binaries browser

dev:
	@bash scripts/bootstrap.sh

demo: dev
	@bash scripts/demo.sh

test: dev
	@bash scripts/test.sh

lint: dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: dev
	.venv/bin/mlpulse bench
