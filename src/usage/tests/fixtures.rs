//! Every fixture gives `expected.json`'s answer however the body is cut into chunks.

use super::reference;
use super::{scan, split_at, FIXTURES};
use proptest::prelude::*;

#[test]
fn fixtures_fed_whole() {
    for f in &FIXTURES {
        assert_eq!(scan(f.format(), [f.body]), f.expected(), "{}", f.name);
    }
}

#[test]
fn fixtures_split_in_two_at_every_byte() {
    for f in &FIXTURES {
        let expected = f.expected();
        for cut in 0..=f.body.len() {
            let (a, b) = f.body.split_at(cut);
            assert_eq!(
                scan(f.format(), [a, b]),
                expected,
                "{} cut at {cut}",
                f.name
            );
        }
    }
}

#[test]
fn fixtures_fed_one_byte_at_a_time() {
    for f in &FIXTURES {
        assert_eq!(
            scan(f.format(), f.body.chunks(1)),
            f.expected(),
            "{}",
            f.name
        );
    }
}

#[test]
fn fixtures_with_empty_chunks_between_bytes() {
    for f in &FIXTURES {
        let chunks = f.body.chunks(1).flat_map(|c| [&[][..], c]);
        assert_eq!(scan(f.format(), chunks), f.expected(), "{}", f.name);
    }
}

#[test]
fn fixtures_match_a_full_serde_json_parse() {
    for f in &FIXTURES {
        let from_serde = reference::scan_with_serde(f.format(), f.body);
        assert_eq!(from_serde, f.expected(), "serde reference, {}", f.name);
        assert_eq!(scan(f.format(), [f.body]), from_serde, "{}", f.name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fixtures_in_random_chunks(
        which in 0..FIXTURES.len(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let f = &FIXTURES[which];
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(f.body.len() + 1)).collect();
        cuts.sort_unstable();
        let pieces = split_at(f.body, &cuts);
        prop_assert_eq!(scan(f.format(), pieces), f.expected(), "{}", f.name);
    }
}
