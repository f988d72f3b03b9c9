# The commands the README starts with:
#   make demo                 the filter in a real Envoy (4 workers) in front of a mock LLM upstream
#   make try EXAMPLE=<name>   one shipped example run as shipped, against the mock (make try: list)
#   make test                 every test: lints, unit and property tests, the wasmtime host, real Envoy
# Each installs what a fresh machine lacks (wasm32-wasip1 target, Envoy's virtualenv) first;
# `make test` and `make try EXAMPLE=fleet` also install Redis and build the Limitador
# stand-in (scripts/setup-fleet); `make test` also installs what the operators' tools need
# (scripts/setup-tools: wasm-bindgen, chromium...).

WASM := target/wasm32-wasip1/release/governance.wasm

.PHONY: demo try test setup wasm guests lint bench clean

setup:
	@scripts/setup >/dev/null

# The release artifact operators load (docs/operating.md).
wasm: setup
	cargo build --release --target wasm32-wasip1 -p governance --lib
	@ls -l $(WASM)

# governance.wasm and the harness's probe guest, built where the harness's build script
# builds them (target/guest), so that building the harness right after finds them up to
# date: the demo and the examples build the module once, and cargo shows the progress.
GUEST_BUILD := cargo build --lib --release --target wasm32-wasip1 --target-dir target/guest
guests: setup
	@echo "== building governance.wasm (the first build takes about a minute)"
	$(GUEST_BUILD) -p governance
	$(GUEST_BUILD) --manifest-path host-tests/abi-probe-guest/Cargo.toml
	@echo "== building the harness: real Envoy runner, mock LLM upstream"
	cargo build -p envoy-harness --bin demo --bin try

demo: guests
	@echo "== running the demo (about 40 s)"
	@cargo run -q -p envoy-harness --bin demo -- $(DEMO_ARGS)

# make try                       lists the examples
# make try EXAMPLE=single-team-openai [KEEP=1]
try: guests $(if $(filter fleet,$(EXAMPLE)),setup-fleet)
	@cargo run -q -p envoy-harness --bin try -- $(EXAMPLE) $(if $(KEEP),--keep)

lint: setup setup-tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p governance --target wasm32-wasip1 -- -D warnings
	cargo clippy -p governance --target wasm32-unknown-unknown --lib -- -D warnings

test: lint setup-fleet test-tools
	cargo test --workspace

clean:
	cargo clean

# Performance (docs/performance.md). `bench` prints every figure and fails on any budget;
# `bench-quick` is the short run that `make test` also makes (through cargo test, which
# only checks that it runs); it reports budget failures without failing unless
# BENCH_ENFORCE=1.
.PHONY: bench-quick setup-bench
setup-bench: setup
	scripts/setup-bench

bench: setup-bench wasm
	cargo run --release -q -p bench

bench-quick: setup wasm
	cargo run --release -q -p bench -- --quick

# Fleet mode's test processes (docs in host-tests/limitador-standin/README.md): Debian's
# redis-server, clang and libclang-dev, and the Limitador stand-in built in release mode
# (about 8 minutes on 2 cores the first time).
.PHONY: setup-fleet
setup-fleet:
	scripts/setup-fleet

# The operators' tools (docs/tools.md): governance-cli, the JavaScript/WebAssembly package
# (target/js/governance-tools/) and the web page (target/web/). `test-tools` runs their
# tests on Node's own test runner: the package against governance-cli and the verdicts the
# filter gives (host-tests/fixtures/verdicts.json), and the page in headless chromium.
.PHONY: setup-tools js tools test-tools
setup-tools: setup
	scripts/setup-tools

js: setup-tools
	scripts/build-js

tools: js
	cargo build -p governance --bin governance-cli

test-tools: tools
	node --test src/js/npm/test/package.test.mjs src/js/page/test/page.test.mjs
