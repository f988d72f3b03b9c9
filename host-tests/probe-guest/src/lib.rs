//! Probe guest for the host's own tests (filled in with the host).
proxy_wasm::main! {{}}
