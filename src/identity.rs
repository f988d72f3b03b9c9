//! Finding the virtual key of a request (docs/clients.md): which header carries it, and which
//! configured key it is.
//!
//! A configured key is found by the SHA-256 of the presented secret. Hashing is the costly
//! part of a request's headers, so each VM keeps a small [`KeyCache`] (one per compiled
//! [`Policy`], so a new configuration starts empty) from the secrets of *configured* keys
//! it has already found to their index; an unknown secret is never kept.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use crate::config::Policy;

/// The request headers the core asks for, one name at a time (the glue reads each with one
/// hostcall instead of copying the whole map).
pub trait RequestHeaders {
    /// The first value of header `name` (given lower-case; matched case-insensitively).
    fn get(&self, name: &str) -> Option<Cow<'_, [u8]>>;
}

impl RequestHeaders for [(String, Vec<u8>)] {
    fn get(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| Cow::Borrowed(value.as_slice()))
    }
}

impl RequestHeaders for Vec<(String, Vec<u8>)> {
    fn get(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        RequestHeaders::get(self.as_slice(), name)
    }
}

/// A key presented by a client: the header it came in and the SHA-256 of the secret. The
/// secret itself is dropped as soon as it is hashed, so it cannot reach a log or a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub header: String,
    pub secret_sha256: [u8; 32],
}

/// A presented key, identified: the configured header it came in (one of
/// [`Policy::key_headers`]) and the configured key it is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified<'p> {
    pub header: &'p str,
    pub key: Option<usize>,
}

/// The first configured header that carries a key, and which configured key it is. Same
/// answer as [`presented_key`] then [`find_key`], but a secret this VM already found skips
/// the SHA-256 (see [`KeyCache`]).
pub fn identify<'p>(policy: &'p Policy, headers: &dyn RequestHeaders) -> Option<Identified<'p>> {
    policy.key_headers.iter().find_map(|name| {
        let value = headers.get(name)?;
        let secret = secret_in(name, &value)?;
        let key = match policy.key_cache.lookup(secret) {
            Some(index) => Some(index),
            None => {
                let found = find_key(policy, &crate::config::sha256_of(secret));
                if let Some(index) = found {
                    policy.key_cache.insert(secret, index);
                }
                found
            }
        };
        Some(Identified {
            header: name.as_str(),
            key,
        })
    })
}

/// The refusal message of a request that carries no key in any configured header: it
/// names those headers, so a client that sent its key elsewhere learns where it belongs.
pub fn key_required_message(policy: &Policy) -> String {
    let headers: Vec<String> = policy
        .key_headers
        .iter()
        .map(|name| {
            if name == "authorization" {
                "authorization (Bearer <key>)".to_string()
            } else {
                name.clone()
            }
        })
        .collect();
    format!(
        "a virtual key is required in one of these headers: {}",
        headers.join(", ")
    )
}

/// The first configured header that carries a key. For `authorization` only a
/// `Bearer <token>` value counts; any other scheme is passed over.
pub fn presented_key(policy: &Policy, headers: &dyn RequestHeaders) -> Option<PresentedKey> {
    policy.key_headers.iter().find_map(|name| {
        let value = headers.get(name)?;
        let secret = secret_in(name, &value)?;
        Some(PresentedKey {
            header: name.clone(),
            secret_sha256: crate::config::sha256_of(secret),
        })
    })
}

/// The secret in a key header's value: a `Bearer` token for `authorization`, the trimmed
/// value otherwise; `None` when there is none.
fn secret_in<'v>(name: &str, value: &'v [u8]) -> Option<&'v [u8]> {
    let secret = if name == "authorization" {
        bearer_token(value)?
    } else {
        trim(value)
    };
    (!secret.is_empty()).then_some(secret)
}

/// The configured key whose secret hashes to `hash`. The map lookup is by hash, so timing
/// reveals nothing about the secret; the final comparison is constant-time anyway.
pub fn find_key(policy: &Policy, hash: &[u8; 32]) -> Option<usize> {
    let index = *policy.key_by_hash.get(hash)?;
    let key = policy.keys.get(index)?;
    constant_time_eq(&key.secret_sha256, hash).then_some(index)
}

pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(trim(value.get(7..)?))
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// How many secrets a [`KeyCache`] keeps at most.
pub const KEY_CACHE_CAPACITY: usize = 4096;

/// Per VM and per configuration: the secrets of configured keys already found, each with
/// its key's index, so a repeated secret skips the SHA-256.
///
/// - Only secrets that matched a configured key are kept, so its size is bounded by the
///   configuration and by [`KEY_CACHE_CAPACITY`] (a full cache drops one entry to make
///   room); an unknown secret is hashed every time and never stored.
/// - It lives in the [`Policy`], so a new configuration starts with an empty cache and an
///   old secret is judged by the new keys.
/// - It only answers *which* key; whether that key is active or expired is checked on
///   every request.
/// - Timing: entries are found by a randomly keyed SipHash of the secret (a guess lands on
///   an entry only by that hash, which says nothing about the stored secret), and the
///   stored secret is then compared in constant time, as [`find_key`] does with hashes.
pub struct KeyCache {
    inner: RefCell<CacheInner>,
}

struct CacheInner {
    hasher: RandomState,
    /// Keyed hash of the secret → (secret, key index).
    entries: HashMap<u64, (Box<[u8]>, usize), BuildHasherDefault<AlreadyHashed>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            inner: RefCell::new(CacheInner {
                hasher: RandomState::new(),
                entries: HashMap::default(),
            }),
        }
    }
}

impl std::fmt::Debug for KeyCache {
    /// Never the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCache({} entries)", self.len())
    }
}

impl KeyCache {
    /// The key index stored for `secret`, if this cache has seen it matched.
    pub fn lookup(&self, secret: &[u8]) -> Option<usize> {
        let inner = self.inner.try_borrow().ok()?;
        let (stored, index) = inner.entries.get(&inner.hasher.hash_one(secret))?;
        bytes_eq_constant_time(stored, secret).then_some(*index)
    }

    /// Remembers that `secret` is configured key `index`.
    pub fn insert(&self, secret: &[u8], index: usize) {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return;
        };
        let hash = inner.hasher.hash_one(secret);
        if inner.entries.len() >= KEY_CACHE_CAPACITY && !inner.entries.contains_key(&hash) {
            if let Some(victim) = inner.entries.keys().next().copied() {
                inner.entries.remove(&victim);
            }
        }
        inner.entries.insert(hash, (Box::from(secret), index));
    }

    /// Number of secrets kept.
    pub fn len(&self) -> usize {
        self.inner
            .try_borrow()
            .map_or(0, |inner| inner.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The map's keys are already SipHash values: use them as they are.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Equal lengths and equal bytes, looking at every byte whatever the first difference.
fn bytes_eq_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        crate::config::parse(
            r#"{"pricing":{},"virtual_keys":[{"id":"a","value":"sk-a"},{"id":"b","value":"sk-b"}]}"#,
        )
        .unwrap()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn first_configured_header_wins() {
        let policy = policy();
        let found = presented_key(
            &policy,
            &headers(&[("x-api-key", b"sk-b"), ("x-bf-vk", b"sk-a")]),
        )
        .unwrap();
        assert_eq!(found.header, "x-bf-vk");
        assert_eq!(find_key(&policy, &found.secret_sha256), Some(0));
    }

    #[test]
    fn authorization_needs_bearer() {
        let policy = policy();
        assert!(
            presented_key(&policy, &headers(&[("authorization", b"Basic c2stYQ==")])).is_none()
        );
        let found =
            presented_key(&policy, &headers(&[("authorization", b"bearer  sk-b ")])).unwrap();
        assert_eq!(find_key(&policy, &found.secret_sha256), Some(1));
        let fallback = presented_key(
            &policy,
            &headers(&[("authorization", b"Basic x"), ("x-api-key", b"sk-a")]),
        )
        .unwrap();
        assert_eq!(fallback.header, "x-api-key");
    }

    #[test]
    fn unknown_and_invalid_utf8_keys_are_not_found() {
        let policy = policy();
        let found = presented_key(&policy, &headers(&[("x-bf-vk", b"\xff\xfe")])).unwrap();
        assert_eq!(find_key(&policy, &found.secret_sha256), None);
    }

    #[test]
    fn identify_agrees_with_hashing_and_caches_only_configured_secrets() {
        let policy = policy();
        let cases: [&[(&str, &[u8])]; 5] = [
            &[("x-bf-vk", b"sk-a")],
            &[("authorization", b"Bearer sk-b")],
            &[("authorization", b"Basic x"), ("x-api-key", b" sk-a ")],
            &[("x-bf-vk", b"sk-unknown")],
            &[("x-other", b"sk-a")],
        ];
        for round in 0..3 {
            for case in cases {
                let headers = headers(case);
                let expected = presented_key(&policy, &headers)
                    .map(|p| (p.header, find_key(&policy, &p.secret_sha256)));
                let got = identify(&policy, &headers).map(|i| (i.header.to_string(), i.key));
                assert_eq!(got, expected, "round {round}: {case:?}");
            }
        }
        // sk-a and sk-b only: the unknown secret was never kept.
        assert_eq!(policy.key_cache.len(), 2);
        assert_eq!(policy.key_cache.lookup(b"sk-unknown"), None);
        assert_eq!(policy.key_cache.lookup(b"sk-a"), Some(0));
        assert_eq!(policy.key_cache.lookup(b"sk-a "), None);
        assert!(
            !format!("{policy:?}").contains("sk-a"),
            "Debug shows no secret"
        );
    }

    #[test]
    fn a_new_configuration_starts_with_an_empty_cache() {
        let old = policy();
        let headers = headers(&[("x-bf-vk", b"sk-a")]);
        assert_eq!(identify(&old, &headers).and_then(|i| i.key), Some(0));
        assert_eq!(old.key_cache.len(), 1);
        let new = crate::config::parse(
            r#"{"pricing":{},"virtual_keys":[{"id":"a","value":"sk-rotated"}]}"#,
        )
        .unwrap();
        assert!(new.key_cache.is_empty());
        assert_eq!(identify(&new, &headers).and_then(|i| i.key), None);
        assert!(new.key_cache.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_and_stays_correct_when_full() {
        let n = KEY_CACHE_CAPACITY + 500;
        let keys: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"id":"k{i}","value":"sk-{i}"}}"#))
            .collect();
        let policy = crate::config::parse(&format!(
            r#"{{"pricing":{{}},"virtual_keys":[{}]}}"#,
            keys.join(",")
        ))
        .unwrap();
        for round in 0..2 {
            for i in 0..n {
                let headers = headers(&[("x-bf-vk", format!("sk-{i}").as_bytes())]);
                assert_eq!(
                    identify(&policy, &headers).and_then(|i| i.key),
                    Some(i),
                    "round {round}"
                );
                assert!(policy.key_cache.len() <= KEY_CACHE_CAPACITY);
            }
        }
        assert_eq!(policy.key_cache.len(), KEY_CACHE_CAPACITY);
        for i in 0..10_000 {
            let headers = headers(&[("x-bf-vk", format!("sk-unknown-{i}").as_bytes())]);
            assert_eq!(identify(&policy, &headers).and_then(|i| i.key), None);
        }
        assert_eq!(policy.key_cache.len(), KEY_CACHE_CAPACITY);
    }
}
