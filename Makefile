# The two commands the README starts with:
#   make demo   the filter in a real Envoy (4 workers) in front of a mock LLM upstream
#   make test   every test: lints, unit and property tests, the wasmtime host, real Envoy
# Both install what a fresh machine lacks (wasm32-wasip1 target, Envoy's virtualenv) first;
# `make test` also builds the Limitador stand-in and installs Redis (scripts/setup-fleet),
# and what the operators' tools need (scripts/setup-tools: wasm-bindgen, chromium...).

WASM := target/wasm32-wasip1/release/governance.wasm

.PHONY: demo test setup wasm lint bench clean

setup:
	scripts/setup

wasm: setup
	cargo build --release --target wasm32-wasip1 -p governance --lib
	@ls -l $(WASM)

demo: wasm
	cargo run --release -q -p envoy-harness --bin demo

lint: setup setup-tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p governance --target wasm32-wasip1 -- -D warnings
	cargo clippy -p governance --target wasm32-unknown-unknown --lib -- -D warnings

test: lint wasm setup-fleet test-tools
	cargo test --workspace

clean:
	cargo clean

# Performance (README.md, section Performance). `bench` prints every figure and fails on any
# budget; `bench-quick` is the short run `make test` also does (through cargo test), which
# only reports budget failures unless BENCH_ENFORCE=1.
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
