//! What an exchange was charged, as Envoy filter state (docs/operating.md, "Cost in access
//! logs"): with `"filter_state": true` the glue writes each field with `set_property`
//! under `governance.<name>`, which Envoy stores as `wasm.governance.<name>`, so an
//! access-log format can print `%FILTER_STATE(wasm.governance.cost_usd:PLAIN)%`.

use crate::config::Policy;
use crate::decimal::{push_money, push_u64};
use crate::money::Money;

/// The property names, in the order [`ChargeRecord::properties`] gives them.
pub const NAMES: [&str; 7] = [
    "governance.virtual_key",
    "governance.team",
    "governance.customer",
    "governance.model",
    "governance.prompt_tokens",
    "governance.output_tokens",
    "governance.cost_usd",
];

/// One charged exchange: who, which model, how many tokens, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    pub virtual_key: String,
    /// Empty when the key has no team (likewise customer, model).
    pub team: String,
    pub customer: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub cost: Money,
}

impl ChargeRecord {
    /// The record of key `key` (index in [`Policy::keys`]); `None` for an unknown index.
    pub fn new(
        policy: &Policy,
        key: usize,
        model: Option<&str>,
        prompt_tokens: u64,
        output_tokens: u64,
        cost: Money,
    ) -> Option<Self> {
        let key = policy.keys.get(key)?;
        let team = key.team.and_then(|t| policy.teams.get(t));
        let customer = key.customer.and_then(|c| policy.customers.get(c));
        Some(Self {
            virtual_key: key.owner.id.clone(),
            team: team.map(|t| t.owner.id.clone()).unwrap_or_default(),
            customer: customer.map(|c| c.id.clone()).unwrap_or_default(),
            model: model.unwrap_or_default().to_string(),
            prompt_tokens,
            output_tokens,
            cost,
        })
    }

    /// Each property's name and value (text: decimal numbers, the cost in USD as the
    /// shortest exact decimal). Empty values are left out: Envoy then prints `-`.
    pub fn properties(&self) -> Vec<(&'static str, Vec<u8>)> {
        let number = |value: u64| {
            let mut out = Vec::with_capacity(20);
            push_u64(&mut out, value);
            out
        };
        let mut cost = Vec::with_capacity(24);
        push_money(&mut cost, self.cost);
        let values = [
            self.virtual_key.as_bytes().to_vec(),
            self.team.as_bytes().to_vec(),
            self.customer.as_bytes().to_vec(),
            self.model.as_bytes().to_vec(),
            number(self.prompt_tokens),
            number(self.output_tokens),
            cost,
        ];
        NAMES
            .into_iter()
            .zip(values)
            .filter(|(_, value)| !value.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_text_and_empty_ones_are_left_out() {
        let record = ChargeRecord {
            virtual_key: "k".into(),
            team: String::new(),
            customer: "acme".into(),
            model: "gpt-4o-mini".into(),
            prompt_tokens: 40,
            output_tokens: 9,
            cost: Money::from_femto(11_400_000_000),
        };
        let text: Vec<(&str, String)> = record
            .properties()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8(value).unwrap()))
            .collect();
        assert_eq!(
            text,
            vec![
                ("governance.virtual_key", "k".to_string()),
                ("governance.customer", "acme".to_string()),
                ("governance.model", "gpt-4o-mini".to_string()),
                ("governance.prompt_tokens", "40".to_string()),
                ("governance.output_tokens", "9".to_string()),
                ("governance.cost_usd", "0.0000114".to_string()),
            ]
        );
    }
}
