//! TEMPORARY STUB (replaced by the real module from wip/window).
use std::fmt;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDuration {
    text: String,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);
impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl LimitDuration {
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        if text.is_empty() || text.starts_with('0') || text.starts_with('-') {
            return Err(DurationError(format!("{text:?} is not a duration")));
        }
        Ok(Self {
            text: text.to_string(),
        })
    }
}
impl fmt::Display for LimitDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
