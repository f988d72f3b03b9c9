//! Model prices and the cost of a response's usage (SPEC.md §4).

use std::collections::HashMap;

use crate::money::Money;
use crate::usage::Usage;

/// Per-token prices of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: Money,
    pub output: Money,
    pub cache_read: Money,
    pub cache_creation: Money,
}

impl Price {
    /// uncached input × input + cache reads × cache-read + cache writes (of both lifetimes)
    /// × creation + output × output, saturating (token counts come from upstream).
    pub fn cost(&self, usage: &Usage) -> Money {
        self.input
            .times(usage.input_uncached)
            .saturating_add(self.cache_read.times(usage.cache_read))
            .saturating_add(self.cache_creation.times(usage.cache_write))
            .saturating_add(self.cache_creation.times(usage.cache_write_1h))
            .saturating_add(self.output.times(usage.output))
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
                .find(|(prefix, _)| model.starts_with(prefix.as_str()))
                .map(|(_, price)| price)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: f64) -> Price {
        let m = Money::from_usd(input).unwrap();
        Price {
            input: m,
            output: m,
            cache_read: m,
            cache_creation: m,
        }
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let mut pricing = Pricing::default();
        pricing.insert("claude*", price(1.0));
        pricing.insert("claude-sonnet-4*", price(2.0));
        pricing.insert("claude-sonnet-4-exact", price(3.0));
        assert_eq!(
            pricing.lookup("claude-sonnet-4-5").unwrap().input,
            Money::from_usd(2.0).unwrap()
        );
        assert_eq!(
            pricing.lookup("claude-haiku").unwrap().input,
            Money::from_usd(1.0).unwrap()
        );
        assert_eq!(
            pricing.lookup("claude-sonnet-4-exact").unwrap().input,
            Money::from_usd(3.0).unwrap()
        );
        assert!(pricing.lookup("gpt-4o").is_none());
    }

    #[test]
    fn cost_prices_each_token_class() {
        let p = Price {
            input: Money::from_usd(3e-6).unwrap(),
            output: Money::from_usd(1.5e-5).unwrap(),
            cache_read: Money::from_usd(3e-7).unwrap(),
            cache_creation: Money::from_usd(3.75e-6).unwrap(),
        };
        let usage = Usage {
            input_uncached: 25,
            cache_read: 8000,
            cache_write: 2000,
            cache_write_1h: 0,
            output: 300,
        };
        // 25×3e-6 + 8000×3e-7 + 2000×3.75e-6 + 300×1.5e-5 = 0.000075 + 0.0024 + 0.0075 + 0.0045
        assert_eq!(p.cost(&usage), Money::from_usd(0.014475).unwrap());
    }
}
