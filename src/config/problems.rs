//! Where configuration problems go while a configuration is compiled. The filter stops at
//! the first one (Envoy is told of one line); the operators' `check` wants every one. Both
//! run the same checks in the same order: in collecting mode a problem is kept and the
//! compiler goes on without the part it spoiled, so the first problem kept is always the one
//! the filter reports.

use super::ConfigError;

type Result<T> = std::result::Result<T, ConfigError>;

pub struct Problems {
    found: Vec<ConfigError>,
    collect: bool,
}

impl Problems {
    /// Compilation ends at the first problem (the filter).
    pub fn stop_at_first() -> Self {
        Self {
            found: Vec::new(),
            collect: false,
        }
    }

    /// Every problem is kept and compilation goes on (`check`).
    pub fn collect_all() -> Self {
        Self {
            found: Vec::new(),
            collect: true,
        }
    }

    pub fn collecting(&self) -> bool {
        self.collect
    }

    /// `result`'s value as `Some`; or its problem, returned as the error when stopping at
    /// the first, else kept (once: a problem met again is not repeated) with `None`, so the
    /// caller goes on without that value.
    pub fn take<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(problem) if self.collect => {
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
