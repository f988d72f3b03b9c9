//! What a request may cost before its response says (docs/reservations.md): the amount
//! reserved on every token limit and budget while the request is in flight; and what a
//! response that ended without usage is charged instead.

use crate::config::{LimitKind, Reservation};
use crate::money::Money;
use crate::pricing::Price;
use crate::usage::Usage;

/// A request's estimated usage and its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt tokens from the body size (all counted as uncached input), output tokens from
    /// the request's cap or the configured default.
    pub usage: Usage,
    /// `usage` priced like a charge; zero when the model has no price (or is unknown).
    pub cost: Money,
}

impl Estimate {
    /// The estimate of a request whose body was `body_bytes` long and capped its output at
    /// `max_output_tokens` (if it said so), priced by `price`.
    pub fn of_request(
        config: &Reservation,
        body_bytes: u64,
        max_output_tokens: Option<u64>,
        price: Option<&Price>,
    ) -> Self {
        let usage = Usage {
            input_uncached: ceil_div(body_bytes, config.prompt_bytes_per_token),
            output: max_output_tokens.unwrap_or(config.default_max_output_tokens),
            ..Usage::default()
        };
        let cost = price.map_or(Money::ZERO, |price| price.cost(&usage));
        Self { usage, cost }
    }

    /// The charge of an exchange whose response ended without usage: the request's
    /// estimate ([`Estimate::of_request`]) plus the response's own bytes as output, at the
    /// same `prompt_bytes_per_token`. The output cap alone would price every answer the
    /// same, however long it ran (or whatever a usage-less endpoint returned); adding what
    /// was actually sent back keeps a response without usage from ever costing less than
    /// one that reports it honestly.
    pub fn of_exchange(
        config: &Reservation,
        body_bytes: u64,
        max_output_tokens: Option<u64>,
        response_bytes: u64,
        price: Option<&Price>,
    ) -> Self {
        let mut usage = Self::of_request(config, body_bytes, max_output_tokens, None).usage;
        usage.output = usage
            .output
            .saturating_add(ceil_div(response_bytes, config.prompt_bytes_per_token));
        let cost = price.map_or(Money::ZERO, |price| price.cost(&usage));
        Self { usage, cost }
    }

    /// The amount this estimate holds on a limit of `kind` (tokens, or femto-USD).
    pub fn amount(&self, kind: LimitKind) -> u128 {
        match kind {
            LimitKind::Tokens => u128::from(self.usage.total_tokens()),
            LimitKind::Budget => self.cost.femto(),
            LimitKind::Requests => 0,
        }
    }
}

/// `ceil(n / d)`; `d` is validated > 0 by the configuration (0 would count every byte).
fn ceil_div(n: u64, d: u64) -> u64 {
    let whole = n.checked_div(d).unwrap_or(n);
    let rest = n.checked_rem(d).unwrap_or(0);
    whole.saturating_add(u64::from(rest > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Rates;

    fn config() -> Reservation {
        Reservation {
            enabled: true,
            ..Reservation::default()
        }
    }

    #[test]
    fn prompt_tokens_round_up_and_output_defaults() {
        let none = Estimate::of_request(&config(), 0, None, None);
        assert_eq!((none.usage.input_uncached, none.usage.output), (0, 4096));
        let one = Estimate::of_request(&config(), 1, Some(10), None);
        assert_eq!((one.usage.input_uncached, one.usage.output), (1, 10));
        let even = Estimate::of_request(&config(), 400, Some(0), None);
        assert_eq!(even.usage.input_uncached, 100);
        let odd = Estimate::of_request(&config(), 401, None, None);
        assert_eq!(odd.usage.input_uncached, 101);
        assert_eq!(odd.amount(LimitKind::Tokens), 101 + 4096);
        assert_eq!(odd.amount(LimitKind::Budget), 0, "unpriced: no money held");
    }

    #[test]
    fn an_exchange_adds_the_response_bytes_to_the_output() {
        let price = Price::flat(Rates {
            input: Money::from_usd(1e-6).unwrap(),
            output: Money::from_usd(2e-6).unwrap(),
            ..Rates::uniform(Money::ZERO)
        });
        // 401 request bytes: 101 prompt tokens; cap 100 + 1001 response bytes: 100 + 251.
        let charged = Estimate::of_exchange(&config(), 401, Some(100), 1001, Some(&price));
        assert_eq!(
            (charged.usage.input_uncached, charged.usage.output),
            (101, 351)
        );
        // 101 × $1e-6 + 351 × $2e-6 = $0.000803.
        assert_eq!(charged.cost, Money::from_femto(803_000_000_000));
        let empty = Estimate::of_exchange(&config(), 0, None, 0, None);
        assert_eq!(
            (empty.usage.total_tokens(), empty.cost),
            (4096, Money::ZERO)
        );
        let huge = Estimate::of_exchange(&config(), u64::MAX, Some(u64::MAX), u64::MAX, None);
        assert_eq!(huge.usage.output, u64::MAX, "saturates, never wraps");
    }

    #[test]
    fn cost_is_priced_like_a_charge() {
        let price = Price::flat(Rates {
            input: Money::from_usd(1e-6).unwrap(),
            output: Money::from_usd(4e-6).unwrap(),
            ..Rates::uniform(Money::ZERO)
        });
        let estimate = Estimate::of_request(&config(), 4000, Some(500), Some(&price));
        // 1000 prompt tokens at $1e-6 + 500 output at $4e-6 = $0.003.
        assert_eq!(estimate.cost, Money::from_usd(0.003).unwrap());
        assert_eq!(estimate.amount(LimitKind::Budget), estimate.cost.femto());
        let huge = Estimate::of_request(&config(), u64::MAX, Some(u64::MAX), Some(&price));
        assert_eq!(
            huge.usage.total_tokens(),
            u64::MAX,
            "saturates, never wraps"
        );
    }
}
