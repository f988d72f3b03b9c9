//! TEMPORARY STUB (replaced by the real module from wip/window).
use std::fmt;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone(String);
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError(String);
impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl Zone {
    pub fn parse(text: &str) -> Result<Self, ZoneError> {
        Ok(Self(text.to_string()))
    }
}
impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
