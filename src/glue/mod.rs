//! proxy-wasm glue: translates Envoy's callbacks into calls on the policy core and the
//! core's answers back into hostcalls. No policy lives here.

mod fleet;
mod host;
mod poster;
mod root;
mod stream;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

/// Small blocks recycled in front of dlmalloc (see `recycler.rs`).
#[global_allocator]
static ALLOCATOR: crate::recycler::Recycler = crate::recycler::Recycler::new();

proxy_wasm::main! {{
    // Only `proxy_log` may be called here (Envoy traps any other hostcall during start-up),
    // so everything else waits for on_vm_start / on_configure.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::GovernanceRoot::new(context_id))
    });
}}
