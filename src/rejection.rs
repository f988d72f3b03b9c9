//! Rejections: their types, status codes and the OpenAI-compatible local reply
//! (docs/clients.md).

/// Every reason the filter answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    VirtualKeyRequired,
    VirtualKeyNotFound,
    VirtualKeyBlocked,
    VirtualKeyExpired,
    ProviderBlocked,
    ModelBlocked,
    ModelNotPriced,
    RequestLimited,
    TokenLimited,
    BudgetExceeded,
    /// `rate_limit.max_in_flight` reached (docs/clients.md).
    ConcurrencyLimited,
    /// A header value found no free slot in its owner's `per_value` table.
    PerValueFull,
    GovernanceUnavailable,
}

impl RejectionKind {
    pub const ALL: [RejectionKind; 13] = [
        RejectionKind::VirtualKeyRequired,
        RejectionKind::VirtualKeyNotFound,
        RejectionKind::VirtualKeyBlocked,
        RejectionKind::VirtualKeyExpired,
        RejectionKind::ProviderBlocked,
        RejectionKind::ModelBlocked,
        RejectionKind::ModelNotPriced,
        RejectionKind::RequestLimited,
        RejectionKind::TokenLimited,
        RejectionKind::BudgetExceeded,
        RejectionKind::ConcurrencyLimited,
        RejectionKind::PerValueFull,
        RejectionKind::GovernanceUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::VirtualKeyRequired => "virtual_key_required",
            RejectionKind::VirtualKeyNotFound => "virtual_key_not_found",
            RejectionKind::VirtualKeyBlocked => "virtual_key_blocked",
            RejectionKind::VirtualKeyExpired => "virtual_key_expired",
            RejectionKind::ProviderBlocked => "provider_blocked",
            RejectionKind::ModelBlocked => "model_blocked",
            RejectionKind::ModelNotPriced => "model_not_priced",
            RejectionKind::RequestLimited => "request_limited",
            RejectionKind::TokenLimited => "token_limited",
            RejectionKind::BudgetExceeded => "budget_exceeded",
            RejectionKind::ConcurrencyLimited => "concurrency_limited",
            RejectionKind::PerValueFull => "per_value_full",
            RejectionKind::GovernanceUnavailable => "governance_unavailable",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            RejectionKind::VirtualKeyRequired | RejectionKind::VirtualKeyNotFound => 401,
            RejectionKind::VirtualKeyBlocked
            | RejectionKind::VirtualKeyExpired
            | RejectionKind::ProviderBlocked
            | RejectionKind::ModelBlocked
            | RejectionKind::ModelNotPriced => 403,
            RejectionKind::RequestLimited
            | RejectionKind::TokenLimited
            | RejectionKind::ConcurrencyLimited => 429,
            RejectionKind::BudgetExceeded => 402,
            RejectionKind::PerValueFull => 429,
            RejectionKind::GovernanceUnavailable => 503,
        }
    }
}

/// A decision to answer the request locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
    /// Whole seconds until the blocking window ends (429 and 402 only).
    pub retry_after_secs: Option<u64>,
    /// The quota headers of the limit that refused (429 and 402 only).
    pub quota_headers: Vec<(String, String)>,
}

impl Rejection {
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after_secs: None,
            quota_headers: Vec::new(),
        }
    }

    pub fn reply(&self) -> LocalReply {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind.as_str(),
                "code": self.kind.as_str(),
                "param": null,
            }
        });
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(secs) = self.retry_after_secs {
            headers.push(("retry-after".to_string(), secs.to_string()));
        }
        headers.extend(self.quota_headers.iter().cloned());
        LocalReply {
            status: self.kind.status(),
            headers,
            body: body.to_string().into_bytes(),
            details: self.kind.as_str().to_string(),
        }
    }
}

/// A response the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy's response-code details (shows in access logs).
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_openai_shaped_json() {
        let mut rejection =
            Rejection::new(RejectionKind::BudgetExceeded, "team 'ml' budget exceeded");
        rejection.retry_after_secs = Some(42);
        let reply = rejection.reply();
        assert_eq!(reply.status, 402);
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error"]["type"], "budget_exceeded");
        assert_eq!(body["error"]["code"], "budget_exceeded");
        assert_eq!(body["error"]["message"], "team 'ml' budget exceeded");
        assert!(body["error"]["param"].is_null());
        assert!(reply
            .headers
            .contains(&("retry-after".to_string(), "42".to_string())));
        assert!(reply
            .headers
            .contains(&("content-type".to_string(), "application/json".to_string())));
    }
}
