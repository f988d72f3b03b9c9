//! Model allow-lists: exact names and `prefix*` patterns.

/// A set of allowed models. An empty set allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSet {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ModelSet {
    pub fn new(entries: &[String]) -> Self {
        let mut set = ModelSet::default();
        for entry in entries {
            match entry.strip_suffix('*') {
                Some(prefix) => set.prefixes.push(prefix.to_string()),
                None => set.exact.push(entry.clone()),
            }
        }
        set
    }

    pub fn allows(&self, model: &str) -> bool {
        self.exact.iter().any(|m| m == model)
            || self.prefixes.iter().any(|p| model.starts_with(p.as_str()))
    }

    /// The entries as written (`prefix*` for a prefix), exact names first.
    pub fn entries(&self) -> Vec<String> {
        let prefixes = self.prefixes.iter().map(|p| format!("{p}*"));
        self.exact.iter().cloned().chain(prefixes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_entries() {
        let set = ModelSet::new(&["gpt-4o-mini".to_string(), "claude-sonnet-4*".to_string()]);
        assert!(set.allows("gpt-4o-mini"));
        assert!(!set.allows("gpt-4o"));
        assert!(set.allows("claude-sonnet-4-5-20250929"));
        assert!(!set.allows("claude-opus-4"));
        assert!(!ModelSet::new(&[]).allows("anything"));
        assert!(ModelSet::new(&["*".to_string()]).allows("anything"));
    }
}
