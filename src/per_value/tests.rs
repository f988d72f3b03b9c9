#![allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "test code: a bad index or overflow fails the test, as it should"
)]

use super::*;
use crate::config::parse;
use crate::store::MemoryStore;

const T0: i64 = 1_764_547_200_000_000_000;
const MINUTE: i64 = 60_000_000_000;

fn policy(max_values: u32) -> Policy {
    parse(&format!(
        r#"{{"virtual_keys":[{{"id":"k","value":"sk","per_value":{{"header":"x-user",
            "max_values":{max_values},
            "rate_limit":{{"request_max_limit":5,"request_reset_duration":"1m"}}}}}}]}}"#
    ))
    .unwrap()
}

/// Takes a request slot of `user`'s counter in `slot`.
fn use_slot(policy: &Policy, store: &MemoryStore, slot: u32, now: i64) {
    let mut slots = ValueSlots::default();
    slots.push(0, slot);
    let slot_store = SlotStore::new(store, policy, &slots);
    let mut counters = Counters::new(&slot_store, &policy.guard_key);
    let limit = &policy.limits[policy.per_values[0].limits[0]];
    counters
        .update(limit, now, |record| {
            record.used += 1;
            crate::counter::Change::Write(())
        })
        .unwrap();
}

fn claim_of(policy: &Policy, store: &MemoryStore, user: &str, now: i64) -> Claim {
    let mut counters = Counters::new(store, &policy.guard_key);
    claim(
        policy,
        &policy.per_values[0],
        &mut counters,
        &value_hash(user.as_bytes()),
        now,
    )
    .unwrap()
}

#[test]
fn a_value_keeps_its_slot_and_two_values_never_share_one() {
    let policy = policy(4);
    let store = MemoryStore::new();
    let Claim::Slot(a) = claim_of(&policy, &store, "a", T0) else {
        panic!("a found no slot")
    };
    assert_eq!(claim_of(&policy, &store, "a", T0), Claim::Slot(a));
    let Claim::Slot(b) = claim_of(&policy, &store, "b", T0) else {
        panic!("b found no slot")
    };
    assert_ne!(a, b);
    let counters = Counters::new(&store, &policy.guard_key);
    let hash = value_hash(b"a");
    assert_eq!(
        find(&policy.per_values[0], &counters, &hash).unwrap(),
        Some(a)
    );
    assert_eq!(
        find(&policy.per_values[0], &counters, &value_hash(b"nobody")).unwrap(),
        None
    );
}

#[test]
fn a_slot_is_reused_only_once_every_window_of_its_value_has_ended_and_starts_empty() {
    let policy = policy(1);
    let store = MemoryStore::new();
    assert_eq!(claim_of(&policy, &store, "a", T0), Claim::Slot(0));
    use_slot(&policy, &store, 0, T0);
    assert_eq!(claim_of(&policy, &store, "b", T0 + MINUTE - 1), Claim::Full);
    assert_eq!(claim_of(&policy, &store, "b", T0 + MINUTE), Claim::Slot(0));
    // b's counter is unused: its window opens at its own first use.
    let counters = Counters::new(&store, &policy.guard_key);
    let limit = &policy.limits[policy.per_values[0].limits[0]];
    let key = policy.per_values[0].counter_key(limit, 0);
    let (bytes, _) = counters.get_raw(&key).unwrap().unwrap();
    assert_eq!(Record::decode(&bytes).unwrap(), Record::default());
    // And a is gone: it would need a slot of its own again.
    assert_eq!(claim_of(&policy, &store, "a", T0 + MINUTE), Claim::Full);
}

#[test]
fn a_value_looks_only_at_the_slots_from_the_one_its_hash_picks() {
    let policy = policy(1_000);
    let store = MemoryStore::new();
    let start = |name: &str| first_slot(&value_hash(name.as_bytes()), 1_000);
    let target = start("newcomer");
    // PROBES values that start where the newcomer does fill its whole range.
    let crowd: Vec<String> = (0..)
        .map(|i| format!("v{i}"))
        .filter(|name| start(name) == target)
        .take(PROBES as usize)
        .collect();
    for name in &crowd {
        assert!(matches!(
            claim_of(&policy, &store, name, T0),
            Claim::Slot(_)
        ));
    }
    assert_eq!(claim_of(&policy, &store, "newcomer", T0), Claim::Full);
    // Values elsewhere in the table still find room.
    let elsewhere = (0..)
        .map(|i| format!("w{i}"))
        .find(|name| start(name).abs_diff(target) > 2 * PROBES)
        .unwrap();
    assert!(matches!(
        claim_of(&policy, &store, &elsewhere, T0),
        Claim::Slot(_)
    ));
}
