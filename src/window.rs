//! TEMPORARY STUB (replaced by the real module from wip/window).
use crate::duration::LimitDuration;
use crate::zone::Zone;
use std::fmt;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_nanos: i64,
    pub end_nanos: i64,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError(String);
impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
#[derive(Debug, Clone)]
pub struct WindowRule {
    pub duration: LimitDuration,
    pub calendar_aligned: bool,
    pub zone: Zone,
}
impl WindowRule {
    pub fn new(
        duration: LimitDuration,
        calendar_aligned: bool,
        zone: Zone,
    ) -> Result<Self, WindowError> {
        Ok(Self {
            duration,
            calendar_aligned,
            zone,
        })
    }
    pub fn window_at(&self, _anchor: i64, now: i64) -> Result<Window, WindowError> {
        Ok(Window {
            start_nanos: now,
            end_nanos: now.saturating_add(60_000_000_000),
        })
    }
}
pub fn format_openai_reset(nanos: i64) -> String {
    format!("{}s", nanos / 1_000_000_000)
}
