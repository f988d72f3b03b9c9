//! Shared data: cpp-host's exact rules, through the store API and through guests.

use crate::common::{get, line, probe, run};
use host_tests::{SetError, SharedData};
use std::sync::mpsc;

#[derive(Debug)]
enum Op {
    Set(
        &'static str,
        &'static str,
        &'static str,
        u32,
        Result<u32, SetError>,
    ),
    Get(&'static str, &'static str, Option<(&'static str, u32)>),
}

fn play(table: &[Op]) {
    let s = SharedData::default();
    for (i, op) in table.iter().enumerate() {
        match *op {
            Op::Set(vm, k, v, cas, want) => assert_eq!(
                s.set(vm, k.as_bytes(), v.as_bytes(), cas),
                want,
                "step {i}: {op:?}"
            ),
            Op::Get(vm, k, want) => {
                let got = s.get(vm, k.as_bytes());
                let got = got
                    .as_ref()
                    .map(|(v, c)| (std::str::from_utf8(v).unwrap_or("?"), *c));
                assert_eq!(got, want, "step {i}: {op:?}");
            }
        }
    }
}

#[test]
fn cpp_host_reference_trace() {
    use Op::*;
    play(&[
        Set("", "k", "1", 0, Ok(1)),
        Set("", "k", "1", 0, Ok(2)),
        Set("", "k", "1", 100, Err(SetError::CasMismatch)),
        Get("", "k", Some(("1", 2))),
        Set("", "k", "2", 2, Ok(3)),
        Get("", "k", Some(("2", 3))),
    ]);
}

#[test]
fn set_on_missing_key_succeeds_even_with_stale_cas() {
    use Op::*;
    play(&[
        Get("", "new", None),
        Set("", "new", "x", 77, Ok(1)),
        Get("", "new", Some(("x", 1))),
        Set("", "new", "y", 77, Err(SetError::CasMismatch)),
    ]);
}

#[test]
fn vm_ids_are_isolated_but_share_one_cas_counter() {
    use Op::*;
    play(&[
        Set("a", "k", "in-a", 0, Ok(1)),
        Get("b", "k", None),
        Set("b", "k", "in-b", 0, Ok(2)),
        Set("a", "other", "z", 0, Ok(3)),
        Get("a", "k", Some(("in-a", 1))),
        Get("b", "k", Some(("in-b", 2))),
        // A failed set does not consume a cas number.
        Set("a", "k", "no", 2, Err(SetError::CasMismatch)),
        Set("a", "k", "yes", 1, Ok(4)),
    ]);
}

#[test]
fn cas_counter_wraps_and_skips_zero() {
    let s = SharedData::default();
    s.set_next_cas(u32::MAX);
    assert_eq!(s.set("", b"k", b"1", 0), Ok(u32::MAX));
    assert_eq!(s.set("", b"k", b"2", 0), Ok(1));
    assert_eq!(s.get("", b"k"), Some((b"2".to_vec(), 1)));
}

#[test]
fn empty_value_is_stored_not_deleted() {
    use Op::*;
    play(&[
        Set("", "k", "v", 0, Ok(1)),
        Set("", "k", "", 1, Ok(2)),
        Get("", "k", Some(("", 2))),
    ]);
}

#[test]
fn guests_use_their_vm_id_namespace() {
    let mut host = probe("").vm_id("tenant-a").build().expect("build");
    for want in 1..=3 {
        let ex = run(host.vm(0), &get("cas-incr=hits"));
        assert_eq!(
            line(&ex, "cas-incr"),
            format!("cas-incr retries=0 value={want}")
        );
    }
    let store = host.shared_data();
    assert_eq!(
        store.get("tenant-a", b"hits").map(|v| v.0),
        Some(b"3".to_vec())
    );
    assert_eq!(store.get("", b"hits"), None);
}

#[test]
fn plugins_with_different_vm_ids_in_one_process_are_isolated() {
    let mut a = probe("").vm_id("a").build().expect("build a");
    let mut b = probe("")
        .vm_id("b")
        .same_process_as(&a)
        .build()
        .expect("build b");
    let mut a2 = probe("")
        .vm_id("a")
        .same_process_as(&a)
        .build()
        .expect("build a2");
    run(a.vm(0), &get("cas-incr=k"));
    let ex = run(b.vm(0), &get("cas-incr=k"));
    assert_eq!(line(&ex, "cas-incr"), "cas-incr retries=0 value=1");
    let ex = run(a2.vm(0), &get("cas-incr=k"));
    assert_eq!(
        line(&ex, "cas-incr"),
        "cas-incr retries=0 value=2",
        "same vm_id, other plugin: shared"
    );
    let store = a.shared_data();
    assert_eq!(
        store.get("a", b"k").map(|v| v.1),
        Some(3),
        "one cas counter across vm_ids"
    );
    assert_eq!(store.get("b", b"k").map(|v| v.1), Some(2));
}

#[test]
fn corrupted_value_is_what_the_guest_reads() {
    let mut host = probe("").build().expect("build");
    run(host.vm(0), &get("cas-incr=n"));
    let store = host.shared_data();
    let cas = store.get("", b"n").map(|v| v.1);
    store.overwrite_raw("", b"n", b"41");
    assert_eq!(
        store.get("", b"n").map(|v| v.1),
        cas,
        "corruption keeps the cas"
    );
    let ex = run(host.vm(0), &get("cas-incr=n"));
    assert_eq!(line(&ex, "cas-incr"), "cas-incr retries=0 value=42");
}

#[test]
fn another_vm_runs_between_get_and_set_and_forces_a_cas_retry() {
    let mut host = probe("seed=c").workers(2).build().expect("build");
    let mut vms = host.take_vms();
    let mut vm_b = vms.pop().expect("vm b");
    let mut vm_a = vms.pop().expect("vm a");
    let (tx, rx) = mpsc::channel();
    vm_a.after_nth_shared_get(1, move || {
        let ex = run(&mut vm_b, &get("cas-incr=c"));
        let _ = tx.send(line(&ex, "cas-incr"));
    });
    let ex = run(&mut vm_a, &get("cas-incr=c"));
    assert_eq!(
        rx.recv().ok().as_deref(),
        Some("cas-incr retries=0 value=1")
    );
    assert_eq!(line(&ex, "cas-incr"), "cas-incr retries=1 value=2");
    assert_eq!(
        host.shared_data().get("", b"c").map(|v| v.0),
        Some(b"2".to_vec())
    );
}

#[test]
fn parallel_vms_on_threads_count_exactly_with_a_cas_loop() {
    let mut host = probe("seed=total").workers(2).build().expect("build");
    let per_thread = 150;
    let handles: Vec<_> = host
        .take_vms()
        .into_iter()
        .map(|mut vm| {
            std::thread::spawn(move || {
                let mut retries = 0u64;
                for _ in 0..per_thread {
                    let ex = run(&mut vm, &get("cas-incr=total"));
                    let l = line(&ex, "cas-incr");
                    let r: u64 = l
                        .split(['=', ' '])
                        .nth(2)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                    retries += r;
                }
                retries
            })
        })
        .collect();
    let retries: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let total = host.shared_data().get("", b"total").map(|v| v.0);
    assert_eq!(
        total,
        Some((2 * per_thread).to_string().into_bytes()),
        "retries seen: {retries}"
    );
}
