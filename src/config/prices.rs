//! Pricing entries: from the LiteLLM price list's shape to a [`Price`].
//!
//! An entry may be pasted from the list whole. Its price fields are applied:
//! `input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`,
//! `cache_creation_input_token_cost`, `cache_creation_input_token_cost_above_1hr`,
//! `input_cost_per_request`, and the long-context tiers `<one of those per-token
//! prices>_above_<N>k_tokens` (or `_above_<N>_tokens`). Any other field with `cost` in its
//! name is a price the filter cannot apply (audio, images, batches, service tiers, web
//! search...), and so are `tiered_pricing` and `off_peak_pricing` (prices by range and by
//! hour); they are refused, so that nothing is silently charged at the wrong price. The
//! list's other fields (`max_tokens`, `mode`, `litellm_provider`, `supports_*`...) are
//! ignored. A `null` price is no price.

use std::collections::BTreeMap;

use serde_json::Value;

use super::problems::Problems;
use super::wire::WirePrice;
use super::ConfigError;
use crate::money::Money;
use crate::pricing::{Price, Pricing, Rates, Tier, MAX_TIERS};

type Result<T> = std::result::Result<T, ConfigError>;

/// The JSON path of a pricing entry: `pricing["gpt-4.1"]` (model names contain dots).
pub(super) fn entry_path(name: &str) -> String {
    let quoted = serde_json::to_string(name).unwrap_or_else(|_| format!("{name:?}"));
    format!("pricing[{quoted}]")
}

pub(super) fn compile_pricing<const C: bool>(
    entries: &BTreeMap<String, Value>,
    problems: &mut Problems<C>,
) -> Result<Pricing> {
    let mut pricing = Pricing::default();
    for (name, entry) in entries {
        if name.is_empty() {
            problems.note(ConfigError::new(
                "pricing",
                "a model name must not be empty",
            ))?;
            continue;
        }
        if let Some(price) = problems.take(compile_entry(entry, &entry_path(name)))? {
            pricing.insert(name, price);
        }
    }
    Ok(pricing)
}

fn compile_entry(entry: &Value, path: &str) -> Result<Price> {
    let wire: WirePrice = serde_path_to_error::deserialize(entry).map_err(|err| {
        let inner = err.path().to_string();
        let at = if inner == "." {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        ConfigError::new(at, err.into_inner().to_string())
    })?;
    let amount = |value: f64, field: &str| price_of(value, &format!("{path}.{field}"));
    let optional = |value: Option<f64>, field: &str| value.map(|v| amount(v, field)).transpose();
    let input = amount(wire.input_cost_per_token, "input_cost_per_token")?;
    let cache_write = optional(
        wire.cache_creation_input_token_cost,
        "cache_creation_input_token_cost",
    )?
    .unwrap_or(input);
    let base = Rates {
        input,
        output: amount(wire.output_cost_per_token, "output_cost_per_token")?,
        cache_read: optional(
            wire.cache_read_input_token_cost,
            "cache_read_input_token_cost",
        )?
        .unwrap_or(input),
        cache_write,
        cache_write_1h: optional(
            wire.cache_creation_input_token_cost_above_1hr,
            "cache_creation_input_token_cost_above_1hr",
        )?
        .unwrap_or(cache_write),
    };
    let mut price = Price::flat(base);
    price.per_request =
        optional(wire.input_cost_per_request, "input_cost_per_request")?.unwrap_or(Money::ZERO);
    for tier in tiers(&wire.other, path, &base)? {
        price = price.with_tier(tier).ok_or_else(|| {
            ConfigError::new(
                path,
                format!("more than {MAX_TIERS} long-context tiers (`*_above_<N>k_tokens`)"),
            )
        })?;
    }
    Ok(price)
}

fn price_of(value: f64, path: &str) -> Result<Money> {
    Money::from_usd(value)
        .ok_or_else(|| ConfigError::new(path, format!("{value} is not a price >= 0")))
}

/// What a long-context tier field prices, by its LiteLLM base name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Input,
    Output,
    CacheRead,
    CacheWrite,
    CacheWrite1h,
}

const TIERED: [(&str, Kind); 5] = [
    ("input_cost_per_token", Kind::Input),
    ("output_cost_per_token", Kind::Output),
    ("cache_read_input_token_cost", Kind::CacheRead),
    ("cache_creation_input_token_cost", Kind::CacheWrite),
    (
        "cache_creation_input_token_cost_above_1hr",
        Kind::CacheWrite1h,
    ),
];

/// `<base>_above_<N>k_tokens` or `<base>_above_<N>_tokens` as (kind, threshold in tokens),
/// the threshold read as LiteLLM reads it (`k` is a thousand).
fn tier_field(name: &str) -> Option<(Kind, u64)> {
    let head = name.strip_suffix("_tokens")?;
    let (base, size) = head.rsplit_once("_above_")?;
    let kind = TIERED.iter().find(|(known, _)| *known == base)?.1;
    let (digits, unit) = match size.strip_suffix('k') {
        Some(digits) => (digits, 1_000),
        None => (size, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let above = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    Some((kind, above))
}

/// One tier's prices as given, and the fields that gave them (for error paths).
#[derive(Default)]
struct GivenTier<'a> {
    input: Option<Money>,
    output: Option<Money>,
    cache_read: Option<Money>,
    cache_write: Option<Money>,
    cache_write_1h: Option<Money>,
    fields: Vec<&'a str>,
}

impl GivenTier<'_> {
    fn slot(&mut self, kind: Kind) -> &mut Option<Money> {
        match kind {
            Kind::Input => &mut self.input,
            Kind::Output => &mut self.output,
            Kind::CacheRead => &mut self.cache_read,
            Kind::CacheWrite => &mut self.cache_write,
            Kind::CacheWrite1h => &mut self.cache_write_1h,
        }
    }
}

/// The long-context tiers among an entry's other fields; refuses any other price field.
/// A price a tier does not give is the base price of the same kind, as LiteLLM falls back.
fn tiers(other: &BTreeMap<String, Value>, path: &str, base: &Rates) -> Result<Vec<Tier>> {
    let mut given: BTreeMap<u64, GivenTier<'_>> = BTreeMap::new();
    for (field, value) in other {
        if value.is_null() {
            continue;
        }
        let at = || format!("{path}.{field}");
        let Some((kind, above)) = tier_field(field) else {
            if field.contains("cost") || field.contains("pricing") {
                return Err(ConfigError::new(
                    at(),
                    "this price cannot be applied by the filter; remove it to accept that \
                     what it prices is not charged",
                ));
            }
            continue;
        };
        let amount = value
            .as_f64()
            .ok_or_else(|| ConfigError::new(at(), format!("{value} is not a price >= 0")))
            .and_then(|v| price_of(v, &at()))?;
        let tier = given.entry(above).or_default();
        if tier.slot(kind).replace(amount).is_some() {
            return Err(ConfigError::new(
                at(),
                format!("a second price for the same tokens above {above}"),
            ));
        }
        tier.fields.push(field);
    }
    given
        .into_iter()
        .map(|(above, tier)| {
            let Some(input) = tier.input else {
                let field = tier.fields.first().copied().unwrap_or_default();
                return Err(ConfigError::new(
                    format!("{path}.{field}"),
                    format!(
                        "a long-context tier applies only with its input price: \
                         add input_cost_per_token_above_{above}_tokens"
                    ),
                ));
            };
            let rates = Rates {
                input,
                output: tier.output.unwrap_or(base.output),
                cache_read: tier.cache_read.unwrap_or(base.cache_read),
                cache_write: tier.cache_write.unwrap_or(base.cache_write),
                cache_write_1h: tier.cache_write_1h.unwrap_or(base.cache_write_1h),
            };
            Ok(Tier { above, rates })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_fields_are_read_like_litellm_reads_them() {
        use Kind::*;
        let cases = [
            (
                "input_cost_per_token_above_200k_tokens",
                Some((Input, 200_000)),
            ),
            (
                "output_cost_per_token_above_128k_tokens",
                Some((Output, 128_000)),
            ),
            (
                "cache_read_input_token_cost_above_272k_tokens",
                Some((CacheRead, 272_000)),
            ),
            (
                "cache_creation_input_token_cost_above_200k_tokens",
                Some((CacheWrite, 200_000)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
                Some((CacheWrite1h, 200_000)),
            ),
            (
                "input_cost_per_token_above_1000_tokens",
                Some((Input, 1_000)),
            ),
            // Not tiers: other bases, service tiers, malformed sizes.
            ("input_cost_per_token_above_200k_tokens_priority", None),
            ("input_cost_per_audio_token_above_200k_tokens", None),
            ("input_cost_per_token_above_1.5k_tokens", None),
            ("input_cost_per_token_above_k_tokens", None),
            ("input_cost_per_token_above__tokens", None),
            ("cache_creation_input_token_cost_above_1hr", None),
            (
                "input_cost_per_token_above_99999999999999999999k_tokens",
                None,
            ),
            ("input_cost_per_token", None),
        ];
        for (name, want) in cases {
            assert_eq!(tier_field(name), want, "{name}");
        }
    }

    fn parse(pricing: &str) -> std::result::Result<crate::config::Policy, String> {
        crate::config::parse(&format!(r#"{{"pricing":{pricing}}}"#)).map_err(|e| e.to_string())
    }

    fn usd(amount: f64) -> Money {
        Money::from_usd(amount).unwrap()
    }

    /// LiteLLM's claude-sonnet-4-5 entry, without its web-search price.
    const SONNET: &str = r#"{"claude-sonnet-4-5": {
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token": 3e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
        "litellm_provider": "anthropic",
        "max_input_tokens": 200000,
        "max_output_tokens": 64000,
        "max_tokens": 64000,
        "mode": "chat",
        "output_cost_per_token": 1.5e-05,
        "supports_assistant_prefill": true,
        "supports_prompt_caching": true,
        "supports_vision": true,
        "prompt_cache_min_tokens": 1024
    }}"#;

    #[test]
    fn a_litellm_entry_with_tiers_and_one_hour_writes_is_applied_whole() {
        let policy = parse(SONNET).unwrap();
        let price = policy.pricing.lookup("claude-sonnet-4-5").unwrap();
        assert_eq!(
            price.base,
            Rates {
                input: usd(3e-6),
                output: usd(1.5e-5),
                cache_read: usd(3e-7),
                cache_write: usd(3.75e-6),
                cache_write_1h: usd(6e-6),
            }
        );
        let tiers: Vec<&Tier> = price.tiers().collect();
        assert_eq!(
            tiers,
            [&Tier {
                above: 200_000,
                rates: Rates {
                    input: usd(6e-6),
                    output: usd(2.25e-5),
                    cache_read: usd(6e-7),
                    cache_write: usd(7.5e-6),
                    cache_write_1h: usd(1.2e-5),
                },
            }]
        );
        assert_eq!(price.per_request, Money::ZERO);
    }

    #[test]
    fn prices_a_tier_leaves_out_are_the_base_prices() {
        let policy = parse(
            r#"{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                "cache_read_input_token_cost": 1e-7,
                "input_cost_per_token_above_128k_tokens": 3e-6}}"#,
        )
        .unwrap();
        let price = policy.pricing.lookup("m").unwrap();
        let tier = price.tiers().next().unwrap();
        assert_eq!(tier.above, 128_000);
        assert_eq!(
            tier.rates,
            Rates {
                input: usd(3e-6),
                ..price.base
            }
        );
        // Without cache prices, the writes of both lifetimes cost the input price.
        assert_eq!(price.base.cache_write, usd(1e-6));
        assert_eq!(price.base.cache_write_1h, usd(1e-6));
    }

    #[test]
    fn the_one_hour_write_price_defaults_to_the_cache_write_price() {
        let policy = parse(
            r#"{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                "cache_creation_input_token_cost": 1.25e-6}}"#,
        )
        .unwrap();
        let base = policy.pricing.lookup("m").unwrap().base;
        assert_eq!(
            (base.cache_write, base.cache_write_1h),
            (usd(1.25e-6), usd(1.25e-6))
        );
    }

    #[test]
    fn the_per_request_fee_is_read() {
        let policy = parse(
            r#"{"m": {"input_cost_per_token": 0, "output_cost_per_token": 0,
                "input_cost_per_request": 0.0025}}"#,
        )
        .unwrap();
        let price = policy.pricing.lookup("m").unwrap();
        assert_eq!(price.per_request, usd(0.0025));
        assert_eq!(price.cost(&crate::usage::Usage::default()), usd(0.0025));
    }

    #[test]
    fn prices_the_filter_cannot_apply_are_refused_with_their_path() {
        let entry = |extra: &str| {
            format!(
                r#"{{"gpt-4.1": {{"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6, {extra}}}}}"#
            )
        };
        for field in [
            r#""input_cost_per_audio_token": 4e-5"#,
            r#""output_cost_per_reasoning_token": 9e-6"#,
            r#""input_cost_per_token_batches": 1e-6"#,
            r#""input_cost_per_token_priority": 4e-6"#,
            r#""input_cost_per_token_above_200k_tokens_priority": 8e-6"#,
            r#""input_cost_per_token_flex": 1e-6"#,
            r#""output_cost_per_image": 0.04"#,
            r#""input_cost_per_second": 0.0001"#,
            r#""search_context_cost_per_query": {"search_context_size_low": 0.01}"#,
            r#""citation_cost_per_token": 2e-6"#,
            r#""code_interpreter_cost_per_session": 0.03"#,
            r#""output_cost_per_request": 0.01"#,
            r#""tiered_pricing": [{"range": [0, 32000], "input_cost_per_token": 1e-6}]"#,
            r#""off_peak_pricing": {"hours_utc": "16:30-00:30", "input_cost_per_token": 1e-6}"#,
        ] {
            let name = field.split('"').nth(1).unwrap();
            let error = parse(&entry(field)).unwrap_err();
            let want = format!(r#"pricing["gpt-4.1"].{name}: this price cannot be applied"#);
            assert!(error.starts_with(&want), "{field}\n  got: {error}");
        }
    }

    #[test]
    fn the_lists_other_fields_and_null_prices_are_accepted() {
        let policy = parse(
            r#"{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                "max_tokens": 8192, "max_input_tokens": 128000, "mode": "chat",
                "litellm_provider": "openai", "supports_vision": true, "source": "https://x",
                "supported_endpoints": ["/v1/chat/completions"], "deprecation_date": "2027-01-01",
                "metadata": {"notes": "x"}, "input_cost_per_audio_token": null,
                "cache_read_input_token_cost": null}}"#,
        )
        .unwrap();
        let base = policy.pricing.lookup("m").unwrap().base;
        assert_eq!(base.cache_read, usd(1e-6), "a null price is no price");
    }

    #[test]
    fn malformed_tiers_are_refused_with_their_path() {
        let entry = |extra: &str| {
            format!(
                r#"{{"m": {{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, {extra}}}}}"#
            )
        };
        let cases = [
            (
                r#""output_cost_per_token_above_200k_tokens": 3e-6"#,
                r#"pricing["m"].output_cost_per_token_above_200k_tokens: a long-context tier applies only with its input price: add input_cost_per_token_above_200000_tokens"#,
            ),
            (
                r#""input_cost_per_token_above_200k_tokens": -1"#,
                r#"pricing["m"].input_cost_per_token_above_200k_tokens: -1 is not a price >= 0"#,
            ),
            (
                r#""input_cost_per_token_above_200k_tokens": "6e-6""#,
                r#"pricing["m"].input_cost_per_token_above_200k_tokens: "6e-6" is not a price >= 0"#,
            ),
            (
                r#""input_cost_per_token_above_200k_tokens": 6e-6, "input_cost_per_token_above_200000_tokens": 6e-6"#,
                r#"pricing["m"].input_cost_per_token_above_200k_tokens: a second price for the same tokens above 200000"#,
            ),
            (
                r#""input_cost_per_token_above_1k_tokens": 1, "input_cost_per_token_above_2k_tokens": 1,
                   "input_cost_per_token_above_3k_tokens": 1, "input_cost_per_token_above_4k_tokens": 1,
                   "input_cost_per_token_above_5k_tokens": 1"#,
                r#"pricing["m"]: more than 4 long-context tiers"#,
            ),
            (
                r#""cache_creation_input_token_cost_above_1hr": -2"#,
                r#"pricing["m"].cache_creation_input_token_cost_above_1hr: -2 is not a price >= 0"#,
            ),
            (
                r#""input_cost_per_request": "free""#,
                r#"pricing["m"].input_cost_per_request: invalid type: string "free", expected f64"#,
            ),
        ];
        for (extra, want) in cases {
            let error = parse(&entry(extra)).unwrap_err();
            assert!(
                error.starts_with(want),
                "{extra}\n  want: {want}\n  got:  {error}"
            );
        }
    }

    #[test]
    fn entry_paths_quote_the_model_name() {
        assert_eq!(entry_path("gpt-4.1"), r#"pricing["gpt-4.1"]"#);
        assert_eq!(entry_path("a\"b"), r#"pricing["a\"b"]"#);
    }
}
