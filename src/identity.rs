//! Finding the virtual key of a request (SPEC.md §3): which header carries it, and which
//! configured key it is.

use crate::config::Policy;

/// A key presented by a client: the header it came in and the SHA-256 of the secret. The
/// secret itself is dropped as soon as it is hashed, so it cannot reach a log or a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub header: String,
    pub secret_sha256: [u8; 32],
}

/// The first configured header that carries a key. For `authorization` only a
/// `Bearer <token>` value counts; any other scheme is passed over.
pub fn presented_key(policy: &Policy, headers: &[(String, Vec<u8>)]) -> Option<PresentedKey> {
    policy.key_headers.iter().find_map(|name| {
        let value = headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())?;
        let secret = if name == "authorization" {
            bearer_token(value)?
        } else {
            trim(value)
        };
        if secret.is_empty() {
            return None;
        }
        Some(PresentedKey {
            header: name.clone(),
            secret_sha256: crate::config::sha256_of(secret),
        })
    })
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
}
