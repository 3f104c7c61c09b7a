# Quarry: the two commands are `make dev` and `make test`; each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
export CARGO_TERM_COLOR ?= never

DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
STAGE ?= dev
ARCH ?= arm64
TOOLS := PATH=$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH SAM_CLI_TELEMETRY=0

.PHONY: dev test venv deploy-tools build lint deploy push-config fmt clippy bench bench-peer soak soak-fuzz soak-load clean lock

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
## The Lambdas are built on their own, as deployed (with the benchmarks, the test harness's
## features would be built into them).
bench: venv
	cargo build --release -p chat-handler -p batch-worker -p cache-lookup -p cost-alarm -p ledger-aggregator
	cargo build --release -p bedrock-emulator -p quarry-bench
	./target/release/emulator-load --concurrency 32 --seconds 10
	cargo bench -p quarry-bench --bench layer
	./target/release/gateway-overhead
	./target/release/gateway-overhead --model-latency-ms 50
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/release/batch-drain
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/release/retrieval-overhead
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/release/bulk-cost
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/release/audit-overhead
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/release/ledger-capacity
	./target/release/cold-start
	$(MAKE) bench-peer

## Side by side with a peer gateway (the LiteLLM proxy, pinned), same upstream (the emulator);
## tables and charts in bench/results/.
bench-peer: venv
	./bench/peer/run.sh

## Longer runs (not in CI): every fuzz target for FUZZ_SECONDS each, then 10,000 requests at
## concurrency 100 through `quarry dev` with 20% throttling.
FUZZ_SECONDS ?= 60
soak: soak-fuzz soak-load

soak-fuzz:
	./crates/fuzz/run.sh $(FUZZ_SECONDS)

soak-load: venv
	cargo build --release -p quarry-cli -p quarry-bench
	QUARRY_PYTHON=$(CURDIR)/$(VENV)/bin/python ./target/release/soak-load

## SAM, cfn-lint, cargo-lambda and zig, pinned (no Docker: cargo-lambda cross-compiles).
deploy-tools: $(DEPLOY_STAMP)
$(DEPLOY_STAMP): infra/deploy/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/deploy/requirements.txt
	touch $@

## sam build: the four Lambdas with cargo-lambda (arm64 by default; ARCH=x86_64 otherwise),
## then each bootstrap's size.
build: deploy-tools
	@if [ "$(ARCH)" = "arm64" ]; then rustup target add aarch64-unknown-linux-gnu >/dev/null; fi
	$(TOOLS) sam build --beta-features --parameter-overrides Architecture=$(ARCH)
	@for f in .aws-sam/build/*/bootstrap; do printf '%-60s %6d KiB\n' "$$f" $$(( $$(stat -c %s "$$f") / 1024 )); done

## sam validate --lint and cfn-lint, both clean.
lint: deploy-tools
	$(TOOLS) AWS_DEFAULT_REGION=us-east-1 sam validate --lint
	$(TOOLS) cfn-lint template.yaml

## sam deploy with infra/samconfig.toml ([$(STAGE)]), then the configuration to SSM.
deploy: build
	$(TOOLS) sam deploy --config-file infra/samconfig.toml --config-env $(STAGE)
	$(MAKE) push-config STAGE=$(STAGE)

## Routing, pricing, budgets, experiments and prompts to /quarry/$(STAGE)/ (changed values
## only). Uses the environment's AWS credentials; AWS_ENDPOINT_URL for a local stack.
push-config:
	cargo run --quiet -p quarry-cli -- config push --stage $(STAGE)

fmt:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) $(DEPLOY_VENV) .aws-sam
