//! Printing figures (one per line) and checking budgets.

/// One budget check.
pub struct Budget {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

/// Figures printed as they come, budgets collected for the summary.
#[derive(Default)]
pub struct Report {
    pub budgets: Vec<Budget>,
}

impl Report {
    /// Prints one figure: `name: value` with an optional note.
    pub fn figure(&self, name: &str, value: impl std::fmt::Display, note: &str) {
        if note.is_empty() {
            println!("{name}: {value}");
        } else {
            println!("{name}: {value}  ({note})");
        }
    }

    /// Records a budget; `detail` says measured vs allowed.
    pub fn budget(&mut self, name: &'static str, pass: bool, detail: String) {
        self.budgets.push(Budget { name, pass, detail });
    }

    /// Prints one PASS/FAIL line per budget; returns the number of failures.
    pub fn summary(&self) -> usize {
        println!();
        println!("== budgets ==");
        for b in &self.budgets {
            let verdict = if b.pass { "PASS" } else { "FAIL" };
            println!("{verdict} {}: {}", b.name, b.detail);
        }
        self.budgets.iter().filter(|b| !b.pass).count()
    }
}

/// `n` with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
