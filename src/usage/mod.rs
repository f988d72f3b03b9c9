//! TEMPORARY STUB (replaced by the real module from wip/usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_uncached: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
}
impl Usage {
    pub fn prompt_tokens(&self) -> u64 {
        self.input_uncached
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }
}
#[derive(Debug, Clone, Copy)]
pub enum BodyFormat {
    Json,
    EventStream,
}
#[derive(Debug, Clone, Default)]
pub struct ScannedUsage {
    pub usage: Option<Usage>,
    pub model: Option<String>,
}
pub struct UsageScanner;
impl UsageScanner {
    pub fn new(_format: BodyFormat) -> Self {
        UsageScanner
    }
    pub fn feed(&mut self, _chunk: &[u8]) {}
    pub fn result(&self) -> ScannedUsage {
        ScannedUsage::default()
    }
}
