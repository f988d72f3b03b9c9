//! Per-model limits (`model_configs` on keys, teams and customers, docs/configuration.md):
//! each entry names a model, exactly or as a `prefix*` pattern, and has its own budgets and
//! rate limit, which count beside its owner's own limits for a request of that model. Of an
//! owner's entries, one applies to a model: the exact name, else the longest prefix, as
//! pricing is matched.

use super::LimitId;

/// One `model_configs` entry of an owner, compiled.
#[derive(Debug)]
pub struct ModelConfig {
    /// The model as written: an exact name, or a prefix followed by `*`.
    pub model: Box<str>,
    pub limits: Vec<LimitId>,
}

impl ModelConfig {
    /// How specific the entry is for `model`: `Some(usize::MAX)` for its exact name, the
    /// prefix's length for a matching pattern, `None` when it does not apply.
    fn rank(&self, model: &str) -> Option<usize> {
        match self.model.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix).then_some(prefix.len()),
            None => (*self.model == *model).then_some(usize::MAX),
        }
    }
}

/// The entry of `configs` that applies to `model`: its exact name, else the longest prefix.
pub fn matching<'a>(configs: &'a [ModelConfig], model: &str) -> Option<&'a ModelConfig> {
    configs
        .iter()
        .filter_map(|config| Some((config.rank(model)?, config)))
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, config)| config)
}

/// What is wrong with a `model` pattern, if anything: it must be non-empty, and `*` may only
/// end it.
pub fn pattern_problem(model: &str) -> Option<&'static str> {
    if model.is_empty() {
        return Some("must not be empty");
    }
    let body = model.strip_suffix('*').unwrap_or(model);
    if body.contains('*') {
        return Some("`*` may only end the model name (a prefix pattern)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model: &str, id: LimitId) -> ModelConfig {
        ModelConfig {
            model: model.into(),
            limits: vec![id],
        }
    }

    #[test]
    fn the_exact_name_wins_then_the_longest_prefix() {
        let configs = [
            config("gpt-4o*", 0),
            config("gpt-4o-mini", 1),
            config("gpt-4*", 2),
            config("gpt-4o-mini*", 3),
        ];
        let id = |model: &str| matching(&configs, model).map(|c| c.limits[0]);
        assert_eq!(id("gpt-4o-mini"), Some(1));
        assert_eq!(id("gpt-4o-mini-2024-07-18"), Some(3));
        assert_eq!(id("gpt-4o"), Some(0));
        assert_eq!(id("gpt-4.1"), Some(2));
        assert_eq!(id("claude-sonnet-4"), None);
        assert_eq!(
            matching(&[config("*", 7)], "anything").map(|c| c.limits[0]),
            Some(7)
        );
    }

    #[test]
    fn patterns_end_in_at_most_one_star() {
        assert_eq!(pattern_problem("gpt-4o*"), None);
        assert_eq!(pattern_problem("gpt-4o"), None);
        assert!(pattern_problem("").is_some());
        assert!(pattern_problem("gpt-*o").is_some());
        assert!(pattern_problem("gpt**").is_some());
    }
}
