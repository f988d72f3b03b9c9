//! Bedrock InvokeModel: the body is the model provider's own JSON, but Bedrock reports the
//! token counts it bills in response headers, for every model.

use super::Usage;

/// The response headers Bedrock InvokeModel reports its counts in: input (without cache
/// reads and writes), output, cache reads, cache writes.
pub const INVOKE_MODEL_TOKEN_HEADERS: [&str; 4] = [
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
];

/// The usage in a Bedrock InvokeModel response's headers, given as (name, value) pairs
/// (names in any case). `None` unless the input or the output count is present; a value
/// that is not a plain decimal count is ignored, as a malformed count in a body is.
pub fn invoke_model_usage<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Option<Usage> {
    let mut counts: [Option<u64>; 4] = [None; 4];
    for (name, value) in headers {
        let slot = INVOKE_MODEL_TOKEN_HEADERS
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
            .and_then(|i| counts.get_mut(i));
        if let (Some(slot), Some(count)) = (slot, parse_count(value)) {
            *slot = Some(count);
        }
    }
    let [input, output, cache_read, cache_write] = counts;
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        input_uncached: input.unwrap_or(0),
        cache_read: cache_read.unwrap_or(0),
        cache_write: cache_write.unwrap_or(0),
        cache_write_1h: 0,
        output: output.unwrap_or(0),
    })
}

/// A header value that is a decimal count fitting a `u64` (surrounding spaces allowed).
fn parse_count(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pairs: &[(&str, &str)]) -> Option<Usage> {
        invoke_model_usage(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn reads_the_four_counts_in_any_case() {
        let found = usage(&[
            ("content-type", "application/json"),
            ("X-Amzn-Bedrock-Input-Token-Count", "25"),
            ("x-amzn-bedrock-output-token-count", " 300 "),
            ("X-AMZN-BEDROCK-CACHE-READ-INPUT-TOKEN-COUNT", "8000"),
            ("x-amzn-bedrock-cache-write-input-token-count", "2000"),
            ("x-amzn-bedrock-invocation-latency", "926"),
        ]);
        let want = Usage {
            input_uncached: 25,
            cache_read: 8000,
            cache_write: 2000,
            cache_write_1h: 0,
            output: 300,
        };
        assert_eq!(found, Some(want));
    }

    #[test]
    fn without_cache_headers_caches_are_zero() {
        let found = usage(&[
            ("x-amzn-bedrock-input-token-count", "14"),
            ("x-amzn-bedrock-output-token-count", "36"),
        ])
        .unwrap();
        assert_eq!(
            (found.input_uncached, found.output, found.prompt_tokens()),
            (14, 36, 14)
        );
    }

    #[test]
    fn no_counts_is_no_usage() {
        assert_eq!(usage(&[("content-type", "application/json")]), None);
        // Cache counts alone do not make a usage: input and output are what Bedrock always sends.
        assert_eq!(
            usage(&[("x-amzn-bedrock-cache-read-input-token-count", "5")]),
            None
        );
    }

    #[test]
    fn malformed_counts_are_ignored() {
        for bad in [
            "-1",
            "1.5",
            "1e3",
            "",
            " ",
            "0x10",
            "18446744073709551616",
            "１２",
        ] {
            assert_eq!(
                usage(&[("x-amzn-bedrock-input-token-count", bad)]),
                None,
                "{bad:?}"
            );
        }
        let found = usage(&[
            ("x-amzn-bedrock-input-token-count", "12"),
            ("x-amzn-bedrock-output-token-count", "abc"),
        ]);
        assert_eq!(found.map(|u| (u.input_uncached, u.output)), Some((12, 0)));
        let max = usage(&[("x-amzn-bedrock-output-token-count", "18446744073709551615")]);
        assert_eq!(max.map(|u| u.output), Some(u64::MAX));
    }
}
