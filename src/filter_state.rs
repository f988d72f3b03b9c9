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

/// One charged exchange: which key (its team and customer follow), which model, how many
/// tokens, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    /// Index in [`Policy::keys`].
    pub key: usize,
    /// Empty when no model was known.
    pub model: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub cost: Money,
}

impl ChargeRecord {
    /// Hands each property's name and value to `set`, in the order of [`NAMES`]: ids and
    /// the model as text, numbers in decimal, the cost in USD as the shortest exact
    /// decimal. Empty values are left out (Envoy then prints `-`).
    pub fn write(&self, policy: &Policy, set: &mut dyn FnMut(&'static str, &[u8])) {
        let Some(key) = policy.keys.get(self.key) else {
            return;
        };
        let team = key
            .team
            .and_then(|t| policy.teams.get(t))
            .map(|t| &t.owner.id);
        let customer = key
            .customer
            .and_then(|c| policy.customers.get(c))
            .map(|c| &c.id);
        let [key_name, team_name, customer_name, model_name, prompt_name, output_name, cost_name] =
            NAMES;
        let mut text = |name: &'static str, value: Option<&String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                set(name, value.as_bytes());
            }
        };
        text(key_name, Some(&key.owner.id));
        text(team_name, team);
        text(customer_name, customer);
        text(model_name, Some(&self.model));
        let mut number = Vec::with_capacity(40);
        push_u64(&mut number, self.prompt_tokens);
        set(prompt_name, &number);
        number.clear();
        push_u64(&mut number, self.output_tokens);
        set(output_name, &number);
        number.clear();
        push_money(&mut number, self.cost);
        set(cost_name, &number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_text_and_empty_ones_are_left_out() {
        let policy = crate::config::parse(
            r#"{"customers":[{"id":"acme"}],
                "virtual_keys":[{"id":"k","value":"sk","customer_id":"acme"}]}"#,
        )
        .unwrap();
        let record = ChargeRecord {
            key: 0,
            model: "gpt-4o-mini".into(),
            prompt_tokens: 40,
            output_tokens: 9,
            cost: Money::from_femto(11_400_000_000),
        };
        let mut written = Vec::new();
        record.write(&policy, &mut |name, value| {
            written.push((name, String::from_utf8(value.to_vec()).unwrap()));
        });
        let text = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            pairs.iter().map(|(n, v)| (*n, v.to_string())).collect()
        };
        assert_eq!(
            written,
            text(&[
                ("governance.virtual_key", "k"),
                ("governance.customer", "acme"),
                ("governance.model", "gpt-4o-mini"),
                ("governance.prompt_tokens", "40"),
                ("governance.output_tokens", "9"),
                ("governance.cost_usd", "0.0000114"),
            ])
        );
    }
}
