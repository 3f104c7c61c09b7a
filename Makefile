# Quarry: the two commands are `make dev` and `make test`; each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
export CARGO_TERM_COLOR ?= never

.PHONY: dev test venv lint fmt clippy bench clean lock

## Python tools of the local stack (moto server, boto3 and openai for the tests), pinned.
venv: $(VENV_STAMP)
$(VENV_STAMP): infra/local/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements.txt
	touch $@

## Re-pin infra/local/requirements.txt from requirements.in (needs the network).
lock:
	rm -rf /tmp/quarry-lock && $(PYTHON) -m venv /tmp/quarry-lock
	/tmp/quarry-lock/bin/pip install --quiet -r infra/local/requirements.in
	( echo "# Pinned from requirements.in (make lock). Do not edit by hand."; /tmp/quarry-lock/bin/pip freeze ) > infra/local/requirements.txt

## Run Quarry locally: moto, the Bedrock emulator, the API on 127.0.0.1:8080, the batch
## poller and the cost-alarm schedule. Ctrl-C stops everything.
dev: venv
	cargo build --quiet -p quarry-cli
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/debug/quarry dev $(DEV_ARGS)

## Every test: unit, and integration against moto and the emulator on free ports.
test: venv
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --workspace --no-fail-fast

## Benchmarks (release builds); figures go in the README with the command that made them.
bench:
	cargo build --release -p bedrock-emulator -p quarry-bench
	./target/release/emulator-load --concurrency 32 --seconds 10

fmt:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV)
