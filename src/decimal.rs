//! Decimal text for the per-response headers, appended as ASCII bytes to a reused buffer
//! without `core::fmt` (whose machinery, and `u128` division, cost more than the headers'
//! hostcalls). Each writer gives exactly the bytes `Display` gives for the same value.

use crate::money::Money;

/// Femto-dollars per dollar.
const FEMTO_PER_USD: u64 = 1_000_000_000_000_000;
const FEMTO_PER_USD_WIDE: u128 = 1_000_000_000_000_000;
/// 10^19, the largest power of ten in a `u64`.
const TEN_POW_19: u128 = 10_000_000_000_000_000_000;

/// Appends `value` in decimal, like `value.to_string()`.
pub fn push_u64(out: &mut Vec<u8>, value: u64) {
    push_padded(out, value, 1);
}

/// Appends `value` in decimal with at least `width` digits (leading zeros), like
/// `format!("{value:0width$}")` (for `width` up to 20).
pub fn push_padded(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    // Two digits per division (the header values run to ten digits and more).
    let mut start = digits.len();
    for pair in digits.rchunks_exact_mut(2) {
        if value < 10 {
            break;
        }
        // The remainder is below 100: twice it indexes the table's pair.
        let at = usize::try_from(value % 100).unwrap_or(0).wrapping_mul(2);
        pair.copy_from_slice(PAIRS.get(at..at.wrapping_add(2)).unwrap_or(b"00"));
        value /= 100;
        start = start.saturating_sub(2);
    }
    if value > 0 || start == digits.len() {
        // The last digit (below 10 here, so `b'0' | d` is `b'0' + d`).
        start = start.saturating_sub(1);
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' | u8::try_from(value).unwrap_or(0);
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// "00", "01", … "99": the decimal text of every number below 100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `value` in decimal, like `value.to_string()`.
pub fn push_u128(out: &mut Vec<u8>, value: u128) {
    match u64::try_from(value) {
        Ok(small) => push_u64(out, small),
        Err(_) => {
            // Rare (counts beyond 1.8e19): the slow u128 division, 19 digits at a time.
            push_u128(out, value / TEN_POW_19);
            push_padded(out, u64::try_from(value % TEN_POW_19).unwrap_or(0), 19);
        }
    }
}

/// Appends an amount in USD like `Money`'s `Display`: the shortest exact decimal (`487.5`,
/// `0.000001`, `12`).
pub fn push_money(out: &mut Vec<u8>, money: Money) {
    let femto = money.femto();
    let (whole, fraction) = match u64::try_from(femto) {
        // Up to $18,446: plain u64 arithmetic.
        Ok(small) => (u128::from(small / FEMTO_PER_USD), small % FEMTO_PER_USD),
        Err(_) => (
            femto / FEMTO_PER_USD_WIDE,
            u64::try_from(femto % FEMTO_PER_USD_WIDE).unwrap_or(0),
        ),
    };
    push_u128(out, whole);
    if fraction == 0 {
        return;
    }
    out.push(b'.');
    let (mut fraction, mut width) = (fraction, 15usize);
    while fraction % 10 == 0 {
        fraction /= 10;
        width = width.saturating_sub(1);
    }
    push_padded(out, fraction, width);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"x".to_vec();
        f(&mut out);
        String::from_utf8(out.split_off(1)).unwrap()
    }

    #[test]
    fn edges() {
        assert_eq!(text(|o| push_u64(o, 0)), "0");
        assert_eq!(text(|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(text(|o| push_padded(o, 7, 3)), "007");
        assert_eq!(text(|o| push_padded(o, 1234, 2)), "1234");
        assert_eq!(text(|o| push_u128(o, u128::MAX)), u128::MAX.to_string());
        let just_over = u128::from(u64::MAX) + 1;
        assert_eq!(text(|o| push_u128(o, just_over)), just_over.to_string());
        for femto in [
            0,
            1,
            10,
            999,
            1_000_000_000_000_000,
            487_500_000_000_000_000,
        ] {
            let money = Money::from_femto(femto);
            assert_eq!(text(|o| push_money(o, money)), money.to_string());
        }
        let huge = Money::from_femto(u128::MAX);
        assert_eq!(text(|o| push_money(o, huge)), huge.to_string());
    }

    proptest! {
        #[test]
        fn same_as_display(value in any::<u128>(), small in any::<u64>(), width in 0usize..=20) {
            prop_assert_eq!(text(|o| push_u128(o, value)), value.to_string());
            prop_assert_eq!(text(|o| push_u64(o, small)), small.to_string());
            prop_assert_eq!(text(|o| push_padded(o, small, width)), format!("{small:0width$}"));
            let money = Money::from_femto(value);
            prop_assert_eq!(text(|o| push_money(o, money)), money.to_string());
            let money = Money::from_femto(u128::from(small));
            prop_assert_eq!(text(|o| push_money(o, money)), money.to_string());
        }
    }
}
