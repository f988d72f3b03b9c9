# The two commands the README starts with:
#   make demo   the filter in a real Envoy (4 workers) in front of a mock LLM upstream
#   make test   every test: lints, unit and property tests, the wasmtime host, real Envoy
# Both install what a fresh machine lacks (wasm32-wasip1 target, Envoy's virtualenv) first;
# `make test` also builds the Limitador stand-in and installs Redis (scripts/setup-fleet).

WASM := target/wasm32-wasip1/release/governance.wasm

.PHONY: demo test setup wasm lint bench clean

setup:
	scripts/setup

wasm: setup
	cargo build --release --target wasm32-wasip1 -p governance --lib
	@ls -l $(WASM)

demo: wasm
	cargo run --release -q -p envoy-harness --bin demo

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p governance --target wasm32-wasip1 -- -D warnings

test: lint wasm setup-fleet
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
