//! Where configuration problems go while a configuration is compiled. The filter stops at
//! the first one (Envoy is told of one line); the operators' `check` wants every one. Both
//! run the same checks in the same order: in collecting mode a problem is kept and the
//! compiler goes on without the part it spoiled, so the first problem kept is always the one
//! the filter reports.
//!
//! The mode is a constant of the type, not a flag: the filter's build compiles only the
//! stopping mode, and none of the going-on code that only `check` needs.

use super::ConfigError;

type Result<T> = std::result::Result<T, ConfigError>;

/// `COLLECT`: keep every problem and go on; else stop at the first.
#[derive(Default)]
pub struct Problems<const COLLECT: bool> {
    found: Vec<ConfigError>,
}

/// Compilation ends at the first problem (the filter).
pub type StopAtFirst = Problems<false>;
/// Every problem is kept and compilation goes on (`check`).
pub type CollectAll = Problems<true>;

impl<const COLLECT: bool> Problems<COLLECT> {
    pub fn new() -> Self {
        Self { found: Vec::new() }
    }

    pub fn collecting(&self) -> bool {
        COLLECT
    }

    /// `result`'s value as `Some`; or its problem, returned as the error when stopping at
    /// the first, else kept (once: a problem met again is not repeated) with `None`, so the
    /// caller goes on without that value.
    pub fn take<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(problem) if COLLECT => {
                if !self.found.contains(&problem) {
                    self.found.push(problem);
                }
                Ok(None)
            }
            Err(problem) => Err(problem),
        }
    }

    /// A problem found outright: see [`Problems::take`].
    pub fn note(&mut self, problem: ConfigError) -> Result<()> {
        self.take::<()>(Err(problem)).map(|_| ())
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.found
    }
}
