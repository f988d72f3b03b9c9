//! Helpers shared by the host tests.

use host_tests::{Exchange, HostBuilder, Request, Response, Vm, PROBE_GUEST_WASM};

/// A builder for the probe guest with `config` as plugin configuration.
pub fn probe(config: &str) -> HostBuilder {
    HostBuilder::new(PROBE_GUEST_WASM).plugin_config(config)
}

/// A POST carrying probe commands in `x-probe`.
pub fn post(cmds: &str, body: &str) -> Request {
    Request::post("/v1/chat?x=1", body).header("x-probe", cmds)
}

/// A GET carrying probe commands in `x-probe`.
pub fn get(cmds: &str) -> Request {
    Request::get("/v1/models?x=1").header("x-probe", cmds)
}

/// Runs `req` against a 200 "upstream-body" response.
pub fn run(vm: &mut Vm, req: &Request) -> Exchange {
    vm.exchange(req, &Response::ok("upstream-body"))
}

/// The first log line of `ex` starting with `prefix`.
pub fn line(ex: &Exchange, prefix: &str) -> String {
    match ex.logs.iter().find(|l| l.message.starts_with(prefix)) {
        Some(l) => l.message.clone(),
        None => panic!("no log starting with {prefix:?} in {:#?}", ex.logs),
    }
}

/// Names of the callbacks `vm` ran for context `ctx`.
pub fn calls(vm: &Vm, ctx: u32) -> Vec<String> {
    vm.trace()
        .iter()
        .filter(|c| c.ctx == ctx)
        .map(|c| {
            let args: Vec<String> = c.args.iter().map(i64::to_string).collect();
            format!("{}({})", c.name, args.join(","))
        })
        .collect()
}
