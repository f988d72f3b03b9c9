//! Model prices and the cost of a response's usage.
//!
//! The prices follow the LiteLLM price list: per-token prices for uncached input, cache
//! reads, cache writes (the default lifetime and Anthropic's one hour apart) and output,
//! long-context tiers that replace them all for a request whose prompt is longer than a
//! threshold, and a fee per request. Every amount is an exact femto-USD integer.

use std::collections::HashMap;

use crate::money::Money;
use crate::usage::Usage;

/// Per-token prices for each kind of token, at one prompt size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: Money,
    pub output: Money,
    pub cache_read: Money,
    /// Cache writes of the default lifetime (Anthropic's five minutes).
    pub cache_write: Money,
    /// Cache writes that live one hour.
    pub cache_write_1h: Money,
}

impl Rates {
    /// Every kind at the same price.
    pub const fn uniform(price: Money) -> Self {
        Self {
            input: price,
            output: price,
            cache_read: price,
            cache_write: price,
            cache_write_1h: price,
        }
    }

    /// Each kind of token times its price, summed, saturating (counts come from upstream).
    pub fn cost(&self, usage: &Usage) -> Money {
        self.input
            .times(usage.input_uncached)
            .saturating_add(self.cache_read.times(usage.cache_read))
            .saturating_add(self.cache_write.times(usage.cache_write))
            .saturating_add(self.cache_write_1h.times(usage.cache_write_1h))
            .saturating_add(self.output.times(usage.output))
    }
}

/// Rates that apply instead of the base ones to a request whose prompt has more than
/// `above` tokens (LiteLLM's `*_above_200k_tokens` fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub above: u64,
    pub rates: Rates,
}

/// Most long-context tiers one model may have. The price list gives a model one threshold
/// (a few have two); a fixed array keeps a price a plain value that is copied, not shared.
pub const MAX_TIERS: usize = 4;

/// Everything one model costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// The rates of a prompt no longer than any tier's threshold.
    pub base: Rates,
    /// Long-context tiers, highest threshold first, then unused slots.
    tiers: [Option<Tier>; MAX_TIERS],
    /// Charged once per priced request, on top of its tokens.
    pub per_request: Money,
}

impl Price {
    /// A price without tiers or fee.
    pub const fn flat(base: Rates) -> Self {
        Self {
            base,
            tiers: [None; MAX_TIERS],
            per_request: Money::ZERO,
        }
    }

    /// Adds a long-context tier, keeping them highest threshold first. `None` when all
    /// [`MAX_TIERS`] are taken or the threshold already has a tier.
    pub fn with_tier(mut self, tier: Tier) -> Option<Self> {
        if self.tiers().any(|t| t.above == tier.above) {
            return None;
        }
        let free = self.tiers.iter_mut().find(|slot| slot.is_none())?;
        *free = Some(tier);
        self.tiers
            .sort_by_key(|slot| std::cmp::Reverse(slot.map(|t| t.above)));
        Some(self)
    }

    /// The long-context tiers, highest threshold first.
    pub fn tiers(&self) -> impl Iterator<Item = &Tier> {
        self.tiers.iter().flatten()
    }

    /// The rates for a request with `prompt_tokens` prompt tokens, as LiteLLM picks them:
    /// the tier with the highest threshold the prompt is strictly above, else the base
    /// rates. LiteLLM compares its `prompt_tokens`, which counts every input token (cache
    /// reads and writes included), the number [`Usage::prompt_tokens`] gives.
    pub fn rates_for(&self, prompt_tokens: u64) -> &Rates {
        self.tiers()
            .find(|tier| prompt_tokens > tier.above)
            .map_or(&self.base, |tier| &tier.rates)
    }

    /// The cost of a request that used `usage`: its tokens at the rates its prompt size
    /// selects, plus the per-request fee (saturating).
    pub fn cost(&self, usage: &Usage) -> Money {
        // Most models have neither tiers nor a fee, and this runs on every request: their
        // cost is the base rates' alone.
        let tokens = match self.tiers.first() {
            Some(Some(_)) => self.rates_for(usage.prompt_tokens()).cost(usage),
            _ => self.base.cost(usage),
        };
        if self.per_request == Money::ZERO {
            tokens
        } else {
            tokens.saturating_add(self.per_request)
        }
    }
}

/// The pricing table: exact names win, then the longest `prefix*` pattern.
#[derive(Debug, Default)]
pub struct Pricing {
    exact: HashMap<String, Price>,
    /// Sorted longest first, so the first match is the longest.
    prefixes: Vec<(String, Price)>,
}

impl Pricing {
    pub fn insert(&mut self, name: &str, price: Price) {
        match name.strip_suffix('*') {
            Some(prefix) => {
                self.prefixes.push((prefix.to_string(), price));
                self.prefixes
                    .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            }
            None => {
                self.exact.insert(name.to_string(), price);
            }
        }
    }

    pub fn lookup(&self, model: &str) -> Option<&Price> {
        self.exact.get(model).or_else(|| {
            self.prefixes
                .iter()
                // A word-at-a-time compare: `starts_with` is a byte loop (`memcmp`) in wasm,
                // and this runs twice per request.
                .find(|(prefix, _)| {
                    model
                        .as_bytes()
                        .get(..prefix.len())
                        .is_some_and(|head| crate::usage::same_bytes(head, prefix.as_bytes()))
                })
                .map(|(_, price)| price)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(amount: f64) -> Money {
        Money::from_usd(amount).unwrap()
    }

    /// claude-sonnet-4-5 as the LiteLLM price list gives it.
    fn sonnet() -> Price {
        let base = Rates {
            input: usd(3e-6),
            output: usd(1.5e-5),
            cache_read: usd(3e-7),
            cache_write: usd(3.75e-6),
            cache_write_1h: usd(6e-6),
        };
        let long = Rates {
            input: usd(6e-6),
            output: usd(2.25e-5),
            cache_read: usd(6e-7),
            cache_write: usd(7.5e-6),
            cache_write_1h: usd(1.2e-5),
        };
        Price::flat(base)
            .with_tier(Tier {
                above: 200_000,
                rates: long,
            })
            .unwrap()
    }

    fn usage(input_uncached: u64, cache_read: u64, cache_write: u64, output: u64) -> Usage {
        Usage {
            input_uncached,
            cache_read,
            cache_write,
            cache_write_1h: 0,
            output,
        }
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let mut pricing = Pricing::default();
        let flat = |amount| Price::flat(Rates::uniform(usd(amount)));
        pricing.insert("claude*", flat(1.0));
        pricing.insert("claude-sonnet-4*", flat(2.0));
        pricing.insert("claude-sonnet-4-exact", flat(3.0));
        let input = |model| pricing.lookup(model).unwrap().base.input;
        assert_eq!(input("claude-sonnet-4-5"), usd(2.0));
        assert_eq!(input("claude-haiku"), usd(1.0));
        assert_eq!(input("claude-sonnet-4-exact"), usd(3.0));
        assert!(pricing.lookup("gpt-4o").is_none());
    }

    #[test]
    fn cost_prices_each_token_class() {
        // 25×3e-6 + 8000×3e-7 + 2000×3.75e-6 + 300×1.5e-5 = 0.000075 + 0.0024 + 0.0075 + 0.0045
        assert_eq!(sonnet().cost(&usage(25, 8000, 2000, 300)), usd(0.014475));
    }

    #[test]
    fn one_hour_cache_writes_have_their_own_price() {
        let five_minutes = usage(0, 0, 10_000, 0);
        let one_hour = Usage {
            cache_write: 0,
            cache_write_1h: 10_000,
            ..five_minutes
        };
        assert_eq!(sonnet().cost(&five_minutes), usd(0.0375));
        assert_eq!(sonnet().cost(&one_hour), usd(0.06));
        let both = Usage {
            cache_write: 4_000,
            cache_write_1h: 6_000,
            ..five_minutes
        };
        // 4000×3.75e-6 + 6000×6e-6
        assert_eq!(sonnet().cost(&both), usd(0.015 + 0.036));
    }

    #[test]
    fn the_long_context_tier_starts_strictly_above_its_threshold() {
        let price = sonnet();
        // Exactly 200,000 prompt tokens: the base rates (LiteLLM compares with `>`).
        let at = usage(200_000, 0, 0, 1_000);
        assert_eq!(price.cost(&at), usd(200_000.0 * 3e-6 + 1_000.0 * 1.5e-5));
        // One more: every token of the request at the tier's rates, output included.
        let above = usage(200_001, 0, 0, 1_000);
        assert_eq!(
            price.cost(&above),
            Money::from_femto(200_001 * 6_000_000_000 + 1_000 * 22_500_000_000)
        );
    }

    #[test]
    fn cached_prompt_tokens_count_toward_the_threshold() {
        // 1 uncached + 150,000 read + 50,000 written (5m) = 200,001 prompt tokens.
        let long = usage(1, 150_000, 50_000, 10);
        let want = 6_000_000_000
            + 150_000 * 600_000_000
            + 50_000 * 7_500_000_000u128
            + 10 * 22_500_000_000;
        assert_eq!(sonnet().cost(&long), Money::from_femto(want));
        let with_1h = Usage {
            cache_write: 49_999,
            cache_write_1h: 1,
            ..long
        };
        let want_1h = 6_000_000_000
            + 150_000 * 600_000_000
            + 49_999 * 7_500_000_000u128
            + 12_000_000_000
            + 10 * 22_500_000_000;
        assert_eq!(sonnet().cost(&with_1h), Money::from_femto(want_1h));
    }

    #[test]
    fn the_highest_tier_below_the_prompt_applies() {
        let tier = |above, price| Tier {
            above,
            rates: Rates::uniform(usd(price)),
        };
        // Inserted out of order on purpose.
        let price = Price::flat(Rates::uniform(usd(1e-6)))
            .with_tier(tier(200_000, 3e-6))
            .and_then(|p| p.with_tier(tier(128_000, 2e-6)))
            .unwrap();
        let input = |n| price.rates_for(n).input;
        assert_eq!(input(128_000), usd(1e-6));
        assert_eq!(input(128_001), usd(2e-6));
        assert_eq!(input(200_000), usd(2e-6));
        assert_eq!(input(200_001), usd(3e-6));
        assert_eq!(
            price.tiers().map(|t| t.above).collect::<Vec<_>>(),
            [200_000, 128_000]
        );
    }

    #[test]
    fn tiers_are_bounded_and_unique() {
        let tier = |above| Tier {
            above,
            rates: Rates::uniform(Money::ZERO),
        };
        let mut price = Price::flat(Rates::uniform(Money::ZERO));
        for above in 1..=MAX_TIERS as u64 {
            price = price.with_tier(tier(above)).unwrap();
        }
        assert_eq!(price.with_tier(tier(99)), None, "no free slot");
        let one = Price::flat(Rates::uniform(Money::ZERO))
            .with_tier(tier(5))
            .unwrap();
        assert_eq!(one.with_tier(tier(5)), None, "same threshold twice");
    }

    #[test]
    fn the_per_request_fee_is_added_once_whatever_the_usage() {
        let price = Price {
            per_request: usd(0.005),
            ..sonnet()
        };
        assert_eq!(price.cost(&Usage::default()), usd(0.005));
        assert_eq!(
            price.cost(&usage(1_000, 0, 0, 100)),
            usd(0.005 + 1_000.0 * 3e-6 + 100.0 * 1.5e-5)
        );
    }

    #[test]
    fn a_million_requests_add_up_exactly() {
        let price = Price {
            per_request: usd(1e-9),
            ..sonnet()
        };
        let one = price.cost(&usage(7, 3, 1, 2));
        let mut total = Money::ZERO;
        for _ in 0..1_000_000 {
            total = total.saturating_add(one);
        }
        // (7×3e-6 + 3×3e-7 + 1×3.75e-6 + 2×1.5e-5 + 1e-9) × 1e6, in femto-USD.
        let femto = 7 * 3_000_000_000u128
            + 3 * 300_000_000
            + 3_750_000_000
            + 2 * 15_000_000_000
            + 1_000_000;
        assert_eq!(total, Money::from_femto(femto * 1_000_000));
    }

    #[test]
    fn absurd_counts_saturate_instead_of_wrapping() {
        let huge = usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        let cost = sonnet().cost(&huge);
        assert!(cost > sonnet().cost(&usage(u64::MAX, 0, 0, 0)));
    }
}
