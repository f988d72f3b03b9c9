//! Module loading, `_initialize` restrictions, canary and reconfiguration.

use crate::common::{calls, get, probe, run};
use crate::wasm::{module, module_with};
use host_tests::{HostBuilder, HostError, LogLevel};

fn load_error(b: HostBuilder) -> String {
    match b.build() {
        Err(HostError::Load(m)) => m,
        Err(e) => panic!("expected a load error, got {e}"),
        Ok(_) => panic!("expected a load error, the module loaded"),
    }
}

#[test]
fn minimal_module_with_known_imports_loads() {
    let m = module(
        &[
            ("env", "proxy_log", 3, 1),
            ("wasi_unstable", "fd_write", 4, 1),
        ],
        true,
    );
    let mut host = HostBuilder::from_bytes(m).build().expect("loads");
    assert_eq!(host.vm(0).root_context_id(), 1);
}

#[test]
fn unknown_import_is_refused() {
    let m = module(
        &[
            ("env", "proxy_log", 3, 1),
            ("env", "proxy_not_in_envoy", 0, 1),
        ],
        true,
    );
    let msg = load_error(HostBuilder::from_bytes(m));
    assert!(msg.contains("proxy_not_in_envoy"), "{msg}");
}

#[test]
fn import_type_mismatch_is_refused() {
    let m = module(&[("env", "proxy_log", 2, 1)], true);
    let msg = load_error(HostBuilder::from_bytes(m));
    assert!(msg.contains("proxy_log"), "{msg}");
}

#[test]
fn module_without_abi_marker_is_refused() {
    let msg = load_error(HostBuilder::from_bytes(module(&[], false)));
    assert!(msg.contains("ABI version"), "{msg}");
}

#[test]
fn allocator_is_malloc_or_proxy_on_memory_allocate() {
    HostBuilder::from_bytes(module_with(&[], true, "malloc"))
        .build()
        .expect("malloc is accepted");
    let msg = load_error(HostBuilder::from_bytes(module_with(&[], true, "my_alloc")));
    assert!(msg.contains("malloc"), "{msg}");
}

#[test]
fn proxy_call_in_initialize_traps_but_logging_is_allowed() {
    let msg = load_error(probe("").env("PROBE_INIT", "shared-get"));
    assert!(msg.contains("restricted_callback"), "{msg}");
    let msg = load_error(probe("").env("PROBE_INIT", "tick"));
    assert!(msg.contains("restricted_callback"), "{msg}");
    let mut host = probe("")
        .env("PROBE_INIT", "log")
        .build()
        .expect("log is allowed in init");
    assert!(host.vm(0).has_log("init log ok"));
    let mut host = probe("")
        .env("PROBE_INIT", "stdout")
        .build()
        .expect("fd_write is allowed");
    let l = host
        .vm(0)
        .logs()
        .iter()
        .find(|l| l.message == "init stdout ok")
        .cloned();
    assert_eq!(l.map(|l| l.level), Some(LogLevel::Info));
}

#[test]
fn on_configure_false_means_envoy_refuses_the_config() {
    match probe("reject").build() {
        Err(HostError::ConfigRejected(_)) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("config accepted"),
    }
}

#[test]
fn canary_configures_once_and_each_worker_once() {
    let mut host = probe("seed=k").workers(3).build().expect("build");
    assert_eq!(
        host.canary_logs()
            .iter()
            .filter(|l| l.message.starts_with("configured"))
            .count(),
        1
    );
    for vm in host.vms() {
        assert_eq!(
            vm.logs()
                .iter()
                .filter(|l| l.message.starts_with("configured root=1"))
                .count(),
            1
        );
    }
    // The canary's on_configure side effects are real: it seeded the key first.
    let (v, cas) = host.shared_data().get("", b"k").expect("seeded");
    assert_eq!((v.as_slice(), cas), (&b"0"[..], 1));
}

#[test]
fn reconfigure_creates_a_new_root_and_retires_the_old_one() {
    let mut host = probe("first").workers(2).build().expect("build");
    host.reconfigure("second").expect("accepted");
    for vm in host.vms() {
        assert_eq!(vm.root_context_id(), 2);
        let root2 = calls(vm, 2);
        assert_eq!(
            root2,
            ["on_context_create(0)", "on_vm_start(0)", "on_configure(6)"]
        );
        let root1 = calls(vm, 1);
        assert_eq!(root1.get(3..).unwrap_or(&[]), ["on_done()", "on_delete()"]);
        assert!(vm.has_log("configured root=2 config=second"));
    }
    // Streams now belong to the new root and get context ids after it.
    let ex = run(host.vm(0), &get(""));
    assert_eq!(ex.client.status, 200);
    assert!(host
        .vm(0)
        .trace()
        .iter()
        .any(|c| c.name == "on_context_create" && c.ctx == 3 && c.args == [2]));
    // A rejected config changes nothing.
    assert!(matches!(
        host.reconfigure("reject"),
        Err(HostError::ConfigRejected(_))
    ));
    assert_eq!(host.vm(0).root_context_id(), 2);
}

#[test]
fn root_whose_on_done_returns_false_is_deleted_after_proxy_done() {
    let mut host = probe("done-later tick=10").build().expect("build");
    host.reconfigure("second").expect("accepted");
    let tail = |host: &mut host_tests::Host| -> Vec<String> {
        calls(host.vm(0), 1).into_iter().skip(3).collect()
    };
    assert_eq!(
        tail(&mut host),
        ["on_done()"],
        "deletion waits for proxy_done"
    );
    host.clock().advance(std::time::Duration::from_millis(10));
    assert_eq!(
        host.vm(0).fire_due_ticks(),
        1,
        "the draining root still ticks"
    );
    assert_eq!(tail(&mut host), ["on_done()", "on_tick()", "on_delete()"]);
    host.clock().advance(std::time::Duration::from_millis(10));
    assert_eq!(
        host.vm(0).fire_due_ticks(),
        0,
        "a deleted root has no timer"
    );
}

#[test]
fn vms_are_send() {
    fn is_send<T: Send>() {}
    is_send::<host_tests::Vm>();
    is_send::<host_tests::Host>();
}

/// A module whose allocator first calls import `module.name` with `args` (i32s, i32 result),
/// and whose `on_vm_start` asks for the `plugin_name` property (so the host must allocate).
fn allocator_calling(module: &str, name: &str, args: &[u32]) -> Vec<u8> {
    use crate::wasm::{call, custom, i32c, Func, DROP};
    let imports = [
        ("env", "proxy_get_property", 4, 1),
        (module, name, args.len(), 1),
    ];
    let mut alloc: Vec<u8> = args.iter().flat_map(|&v| i32c(v)).collect();
    alloc.extend(call(1));
    alloc.push(DROP);
    alloc.extend(i32c(1024));
    let mut start: Vec<u8> = [0, 11, 2048, 2052].iter().flat_map(|&v| i32c(v)).collect();
    start.extend(call(0));
    start.push(DROP);
    start.extend(i32c(1));
    let funcs = [
        Func {
            export: "proxy_on_memory_allocate",
            params: 1,
            results: 1,
            body: alloc,
        },
        Func {
            export: "proxy_abi_version_0_2_1",
            params: 0,
            results: 0,
            body: Vec::new(),
        },
        Func {
            export: "proxy_on_vm_start",
            params: 2,
            results: 1,
            body: start,
        },
    ];
    custom(&imports, &funcs, b"plugin_name")
}

#[test]
fn only_allocator_safe_hostcalls_run_inside_the_allocator() {
    let restricted = [
        ("env", "proxy_done", vec![]),
        ("env", "proxy_get_log_level", vec![4096]),
        ("wasi_snapshot_preview1", "sched_yield", vec![]),
    ];
    for (m, n, args) in restricted {
        match HostBuilder::from_bytes(allocator_calling(m, n, &args)).build() {
            Err(HostError::VmStartFailed(msg)) => {
                assert!(msg.contains("restricted_callback"), "{n}: {msg}")
            }
            Err(e) => panic!("{n}: wrong error {e}"),
            Ok(_) => panic!("{n} inside the allocator must trap"),
        }
    }
    // proxy_log is allowed there: it logs the 11 bytes at offset 0.
    let mut host = HostBuilder::from_bytes(allocator_calling("env", "proxy_log", &[2, 0, 11]))
        .build()
        .expect("proxy_log is allowed");
    assert!(host.vm(0).has_log("plugin_name"));
}
