//! TEMPORARY: finds the request's top-level "model" (replaced by a streaming version).
#[derive(Debug, Default)]
pub struct RequestSniffer {
    buffer: Vec<u8>,
    model: Option<String>,
}

impl RequestSniffer {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.buffer.len() < 65536 {
            self.buffer.extend_from_slice(chunk);
        }
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&self.buffer) {
            self.model = value
                .get("model")
                .and_then(|m| m.as_str())
                .map(str::to_string);
        }
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}
