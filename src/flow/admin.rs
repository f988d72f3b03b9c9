//! The admin endpoints' requests (`admin.rs`): the admin key checked at request headers,
//! the body held by Envoy until it is whole (nothing of it goes upstream), then the
//! counter adjusted and the answer sent locally.

use std::rc::Rc;

use super::{header_text, Env, Flow, RequestAction, RequestHead, Stage};
use crate::admin::{self, Action, Requester};
use crate::counter::Counters;
use crate::usage_endpoint::is_admin;

impl Flow {
    /// Request headers of `POST <usage path>/reset` or `/credit`.
    pub(super) fn admin_headers(
        &mut self,
        action: Action,
        head: &RequestHead<'_>,
    ) -> RequestAction {
        let policy = Rc::clone(&self.policy);
        self.stage = Stage::Replied;
        if !is_admin(&policy, head.headers) {
            return RequestAction::Reply(admin::unauthorized());
        }
        if policy.fleet.is_some() {
            return RequestAction::Reply(admin::not_in_fleet_mode(action));
        }
        if head.end_of_stream {
            return RequestAction::Reply(admin::error_reply(
                400,
                "invalid_request",
                "the body must be a JSON object naming the counter (docs/operating.md)",
            ));
        }
        self.stage = Stage::Admin {
            action,
            body: Vec::new(),
            requester: Requester {
                request_id: header_text(head.headers, "x-request-id"),
                forwarded_for: header_text(head.headers, "x-forwarded-for"),
            },
        };
        // The headers go on (a filter that holds them gets no body); the admin key must
        // not go with them.
        RequestAction::Continue {
            remove_headers: vec!["authorization".to_string()],
        }
    }

    /// A body frame of an admin request: kept (Envoy holds it, see
    /// [`Flow::holds_request_body`]) until the last one, then carried out.
    pub(super) fn admin_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let Stage::Admin { body, .. } = &mut self.stage else {
            return RequestAction::Continue {
                remove_headers: Vec::new(),
            };
        };
        if body.len().saturating_add(chunk.len()) > admin::MAX_BODY_BYTES {
            self.stage = Stage::Replied;
            return RequestAction::Reply(admin::error_reply(
                400,
                "invalid_request",
                &format!("the body is larger than {} bytes", admin::MAX_BODY_BYTES),
            ));
        }
        body.extend_from_slice(chunk);
        if !end_of_stream {
            return RequestAction::Continue {
                remove_headers: Vec::new(),
            };
        }
        let Stage::Admin {
            action,
            body,
            requester,
        } = std::mem::replace(&mut self.stage, Stage::Replied)
        else {
            return RequestAction::Continue {
                remove_headers: Vec::new(),
            };
        };
        let policy = Rc::clone(&self.policy);
        let mut counters = Counters::new(env.store, &policy.guard_key);
        let reply = admin::apply(&policy, &mut counters, action, &body, env.now, &requester);
        self.flush_conflicts(&counters, env);
        match reply {
            Ok(reply) => RequestAction::Reply(reply),
            Err(err) => RequestAction::Reply(self.unavailable(err, &mut counters, env)),
        }
    }

    /// Whether this is an admin request whose body is still coming.
    pub(super) fn is_admin_body(&self) -> bool {
        matches!(self.stage, Stage::Admin { .. })
    }
}
