//! Exact money: USD kept as an integer count of femto-dollars (1e-15 USD).
//!
//! Floating-point sums drift (a million charges of $0.0000015 do not add up to $1.5 in f64),
//! so every amount the filter stores or compares is an integer. 1e-15 USD resolves every
//! per-token price in the LiteLLM price list exactly, and a `u128` holds budgets far beyond
//! the $1e9 the configuration allows.

use std::fmt;

/// Femto-dollars per dollar.
const FEMTO_PER_USD: u128 = 1_000_000_000_000_000;
/// The largest amount the configuration accepts, in USD.
pub const MAX_CONFIG_USD: f64 = 1e12;

/// An amount of money in femto-USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(u128);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_femto(femto: u128) -> Self {
        Money(femto)
    }

    pub const fn femto(self) -> u128 {
        self.0
    }

    /// Converts a configured USD amount. `None` for negatives, NaN, infinities and amounts
    /// above [`MAX_CONFIG_USD`]; the result is rounded to the nearest femto-dollar, which is
    /// exact for every price written with up to 15 decimals.
    pub fn from_usd(usd: f64) -> Option<Self> {
        if !(0.0..=MAX_CONFIG_USD).contains(&usd) {
            return None;
        }
        // Split into whole dollars and the fraction so the f64 product stays well inside
        // the 53-bit mantissa for the part that matters.
        let whole = usd.trunc();
        let fraction = usd - whole;
        // Both casts are exact or saturating by construction: `whole` is an integer in
        // 0..=1e12 and `fraction * 1e15` lies in 0..1e15.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "values are range-checked above"
        )]
        let (whole, fraction) = (whole as u128, (fraction * 1e15).round() as u128);
        let whole_femto = whole.checked_mul(FEMTO_PER_USD)?;
        let fraction_femto = fraction;
        whole_femto.checked_add(fraction_femto).map(Money)
    }

    /// The amount in USD as an f64, for JSON output and messages (never for arithmetic).
    pub fn as_usd_f64(self) -> f64 {
        let whole = self.0 / FEMTO_PER_USD;
        let fraction = self.0 % FEMTO_PER_USD;
        whole as f64 + fraction as f64 / 1e15
    }

    /// Micro-dollars, rounded down: the unit of the `spend_micro_usd` Envoy counter.
    pub fn micro_usd(self) -> u128 {
        self.0 / 1_000_000_000
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// `price × tokens`, saturating: token counts come from upstream responses and are
    /// untrusted, so an absurd count must not wrap around to a small charge.
    pub fn times(self, tokens: u64) -> Money {
        if tokens == 0 {
            // Most kinds of token are absent from most responses (no cache reads or writes):
            // skipping them skips a 128-bit multiply, a call in wasm32.
            return Money::ZERO;
        }
        match u64::try_from(self.0) {
            // Two u64 factors cannot overflow a u128: one widening multiply, where the
            // saturating u128 multiply costs several hundred wasm instructions.
            Ok(price) => Money(u128::from(price).wrapping_mul(u128::from(tokens))),
            Err(_) => Money(self.0.saturating_mul(u128::from(tokens))),
        }
    }

    /// Fixed four-decimal rendering for messages, e.g. `500.0000`.
    pub fn four_decimals(self) -> FourDecimals {
        FourDecimals(self)
    }
}

impl fmt::Display for Money {
    /// Shortest exact decimal: `487.5`, `0.000001`, `12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / FEMTO_PER_USD;
        let fraction = self.0 % FEMTO_PER_USD;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:015}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Display adapter: rounds half up to four decimals.
pub struct FourDecimals(Money);

impl fmt::Display for FourDecimals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNIT: u128 = FEMTO_PER_USD / 10_000;
        let ten_thousandths = self.0 .0.saturating_add(UNIT / 2) / UNIT;
        write!(
            f,
            "{}.{:04}",
            ten_thousandths / 10_000,
            ten_thousandths % 10_000
        )
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn million_small_charges_add_up_exactly() {
        let price = Money::from_usd(0.0000015).unwrap();
        let mut total = Money::ZERO;
        for _ in 0..1_000_000 {
            total = total.saturating_add(price);
        }
        assert_eq!(total, Money::from_usd(1.5).unwrap());
        assert_eq!(total.to_string(), "1.5");
    }

    #[test]
    fn converts_prices_exactly() {
        assert_eq!(Money::from_usd(1.5e-7).unwrap().femto(), 150_000_000);
        assert_eq!(Money::from_usd(3.75e-6).unwrap().femto(), 3_750_000_000);
        assert_eq!(Money::from_usd(7.5e-8).unwrap().femto(), 75_000_000);
        assert_eq!(
            Money::from_usd(1e9).unwrap().femto(),
            1_000_000_000 * FEMTO_PER_USD
        );
    }

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(Money::from_usd(-1.0), None);
        assert_eq!(Money::from_usd(f64::NAN), None);
        assert_eq!(Money::from_usd(f64::INFINITY), None);
        assert_eq!(Money::from_usd(1e13), None);
    }

    #[test]
    fn renders_for_humans() {
        assert_eq!(Money::from_usd(487.5).unwrap().to_string(), "487.5");
        assert_eq!(
            Money::from_usd(500.0).unwrap().four_decimals().to_string(),
            "500.0000"
        );
        assert_eq!(
            Money::from_usd(0.00005)
                .unwrap()
                .four_decimals()
                .to_string(),
            "0.0001"
        );
        assert_eq!(
            Money::from_usd(12.34564)
                .unwrap()
                .four_decimals()
                .to_string(),
            "12.3456"
        );
    }

    #[test]
    fn absurd_token_counts_saturate() {
        let price = Money::from_usd(1e-3).unwrap();
        assert_eq!(
            price.times(u64::MAX).femto(),
            1_000_000_000_000 * u128::from(u64::MAX)
        );
        assert_eq!(
            Money::from_femto(u128::MAX).times(2),
            Money::from_femto(u128::MAX)
        );
        assert_eq!(Money::from_femto(u128::MAX).times(0), Money::ZERO);
        assert_eq!(price.times(0), Money::ZERO);
    }

    proptest! {
        #[test]
        fn sums_are_exact_in_any_order(charges in proptest::collection::vec(0u64..10_000_000, 1..200)) {
            let price = Money::from_usd(1.5e-7).unwrap();
            let forward = charges.iter().fold(Money::ZERO, |acc, t| acc.saturating_add(price.times(*t)));
            let backward = charges.iter().rev().fold(Money::ZERO, |acc, t| acc.saturating_add(price.times(*t)));
            let tokens: u64 = charges.iter().sum();
            prop_assert_eq!(forward, backward);
            prop_assert_eq!(forward, price.times(tokens));
        }
    }
}
