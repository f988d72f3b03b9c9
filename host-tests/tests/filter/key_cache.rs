//! The per-VM cache of secrets already identified (src/identity.rs `KeyCache`), through the
//! real module: a cached secret is judged by the current configuration, and still blocked
//! or expired like any other; many distinct secrets do not grow the VM's memory.

use crate::support::*;

fn keys(rest: &str) -> String {
    config(&format!(r#""virtual_keys":[{rest}]"#))
}

#[test]
fn a_new_configuration_does_not_admit_a_cached_old_secret() {
    let mut host = host(&keys(r#"{"id":"vk-a","value":"sk-a"}"#));
    for _ in 0..3 {
        let ex = host
            .vm(0)
            .exchange(&chat("sk-a", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200);
    }
    // The same key id with a new secret, and the old secret given to nobody.
    host.reconfigure(keys(r#"{"id":"vk-a","value":"sk-a-rotated"}"#))
        .expect("reconfigure");
    let vm = host.vm(0);
    let ex = vm.exchange(&chat("sk-a", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 401);
    assert_eq!(error_type(&ex), "virtual_key_not_found");
    let ex = vm.exchange(&chat("sk-a-rotated", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);

    // Blocking the key in a new configuration blocks the cached secret at once.
    host.reconfigure(keys(
        r#"{"id":"vk-a","value":"sk-a-rotated","is_active":false}"#,
    ))
    .expect("reconfigure");
    let ex = host
        .vm(0)
        .exchange(&chat("sk-a-rotated", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 403);
    assert_eq!(error_type(&ex), "virtual_key_blocked");
}

#[test]
fn a_cached_secret_still_expires() {
    // T0 is 2026-11-02T12:00:00Z; the key expires one hour later.
    let mut host = host(&keys(
        r#"{"id":"vk-soon","value":"sk-soon","expires_at":"2026-11-02T13:00:00Z"}"#,
    ));
    for _ in 0..3 {
        let ex = host
            .vm(0)
            .exchange(&chat("sk-soon", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200);
    }
    host.clock().advance(std::time::Duration::from_secs(3600));
    let ex = host
        .vm(0)
        .exchange(&chat("sk-soon", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 403);
    assert_eq!(error_type(&ex), "virtual_key_expired");
}

#[test]
fn many_distinct_unknown_secrets_keep_memory_flat() {
    let mut host = host(&keys(r#"{"id":"vk-a","value":"sk-a"}"#));
    let vm = host.vm(0);
    let send = |vm: &mut host_tests::Vm, secret: &str, status: u32| {
        let ex = vm.exchange(&chat(secret, "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(ex.client.status, status, "{secret}");
        vm.forget_stream(ex.stream);
        vm.clear_trace();
    };
    for n in 0..500 {
        send(vm, &format!("sk-warm-{n:040}"), 401);
        send(vm, "sk-a", 200);
    }
    let pages = vm.memory_pages();
    for n in 0..20_000 {
        send(vm, &format!("sk-unknown-{n:040}"), 401);
    }
    send(vm, "sk-a", 200);
    assert_eq!(
        vm.memory_pages(),
        pages,
        "20,000 unknown secrets grew memory"
    );
}
