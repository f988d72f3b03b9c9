//! How a stream ends: buffer overflow, local replies (re-entering the plugin's response
//! callbacks), traps, resets, on_log/on_done/on_delete, and the deferred-action queue.

use super::view::LocalReplyInfo;
use super::{status_of, StreamDriver};
use crate::abi::headers::Headers;
use crate::abi::reply;
use crate::state::{Access, Deferred, PluginReply};
use crate::vm::{call, Vm};

impl Vm {
    pub(super) fn too_large(&mut self, d: &mut StreamDriver, dir: usize) {
        if dir == 0 {
            self.envoy_reply(d, 413, "Payload Too Large", "request_payload_too_large");
        } else if d.client.headers.is_some() {
            self.reset(d);
        } else {
            self.envoy_reply(
                d,
                500,
                "Internal Server Error",
                "response_payload_too_large",
            );
        }
    }

    pub(super) fn envoy_reply(
        &mut self,
        d: &mut StreamDriver,
        status: u32,
        body: &str,
        details: &str,
    ) {
        let reply = PluginReply {
            status,
            details: details.to_string(),
            body: body.as_bytes().to_vec(),
            headers: Headers::default(),
            grpc_status: -1,
        };
        self.local_reply(d, reply, false);
    }

    /// Sends a local reply: built like Envoy, then run through this plugin's own response
    /// header/body callbacks on the same context (upstream skipped), then the stream ends.
    pub(super) fn local_reply(
        &mut self,
        d: &mut StreamDriver,
        reply: PluginReply,
        from_plugin: bool,
    ) {
        if d.finished {
            return;
        }
        if d.client.headers.is_some() {
            return self.reset(d);
        }
        let built = reply::build(&reply, Some(&d.request_headers));
        d.client.local_reply = Some(LocalReplyInfo {
            status: reply.status,
            details: reply.details.clone(),
            from_plugin,
        });
        if d.upstream.headers.is_some() && !d.upstream.complete {
            d.upstream.reset = true;
        }
        let (mut headers, mut body) = (built.headers, built.body);
        let ctx = d.ctx.unwrap_or(0);
        if let (Some(http), false) = (self.http(d.ctx), d.bypass) {
            http.response_code = Some(reply.status);
            http.code_details = Some(reply.details.clone());
            http.maps[2] = Some(headers.clone());
            http.access[2] = Access::ReadWrite;
            let n = headers.len() as i32;
            let eos = body.is_empty();
            call!(
                self,
                response_headers,
                "on_response_headers",
                ctx,
                (ctx as i32, n, i32::from(eos)),
                vec![i64::from(n), i64::from(eos)]
            );
            if let Some(http) = self.http(d.ctx) {
                http.access[2] = Access::Unavailable;
                headers = http.maps[2].clone().unwrap_or_default();
                if !eos {
                    http.body[1] = Some(body.clone());
                }
            }
            if !eos {
                let len = body.len() as i32;
                call!(
                    self,
                    response_body,
                    "on_response_body",
                    ctx,
                    (ctx as i32, len, 1),
                    vec![i64::from(len), 1]
                );
                if let Some(b) = self.http(d.ctx).and_then(|h| h.body[1].take()) {
                    body = b;
                }
            }
            // A local reply is the plugin's last word: anything it queued meanwhile is dropped.
            self.store.data_mut().deferred.retain(|x| !matches!(x, Deferred::LocalReply { ctx: c, .. } | Deferred::Continue { ctx: c, .. } if *c == ctx));
        }
        d.client.status = status_of(&headers);
        d.client.headers = Some(headers);
        d.client.body = body;
        d.client.complete = true;
        self.finish(d);
    }

    /// A callback trapped (VM now failed): fail-open bypasses the filter, else 503.
    pub(super) fn on_trap(&mut self, d: &mut StreamDriver, dir: usize) {
        if self.store.data().shared.settings.fail_open {
            d.bypass = true;
            let side = d.side(dir);
            if side.holding {
                let held = std::mem::take(&mut side.held);
                side.buffer.extend_from_slice(&held);
                for (frame, _) in std::mem::take(&mut side.held_later) {
                    side.buffer.extend_from_slice(&frame);
                }
                side.holding = false;
            }
            self.flush(d, dir);
            self.maybe_finish(d);
        } else {
            self.envoy_reply(d, 503, "", "wasm_fail_stream");
        }
    }

    pub(super) fn failed_at_start(&mut self, d: &mut StreamDriver) {
        if self.store.data().shared.settings.fail_open {
            d.bypass = true;
        } else {
            self.envoy_reply(d, 503, "", "wasm_fail_stream");
        }
    }

    pub(super) fn reset(&mut self, d: &mut StreamDriver) {
        if d.finished {
            return;
        }
        d.client.reset = true;
        if d.upstream.headers.is_some() && !d.upstream.complete {
            d.upstream.reset = true;
        }
        self.finish(d);
    }

    pub(super) fn upstream_reset_inner(&mut self, d: &mut StreamDriver) {
        if d.finished {
            return;
        }
        d.upstream.reset = !d.upstream.complete || !d.sides[1].complete;
        if d.client.headers.is_some() {
            return self.reset(d);
        }
        let body =
            "upstream connect error or disconnect/reset before headers. reset reason: remote reset";
        self.envoy_reply(
            d,
            503,
            body,
            "upstream_reset_before_response_started{remote_reset}",
        );
    }

    pub(super) fn maybe_finish(&mut self, d: &mut StreamDriver) {
        if d.client.complete || d.client.reset {
            self.finish(d);
        }
    }

    /// on_log (maps read-only), on_done, on_delete; then the context is gone.
    pub(super) fn finish(&mut self, d: &mut StreamDriver) {
        if d.finished {
            return;
        }
        d.finished = true;
        let Some(ctx) = d.ctx else {
            return;
        };
        if let Some(http) = self.http(d.ctx) {
            // In on_log every map is readable (a missing one reads as NotFound), none writable.
            http.access = [Access::ReadOnly; 4];
            http.body = [None, None];
        }
        call!(self, log, "on_log", ctx, ctx as i32, vec![]);
        if let Some(http) = self.http(d.ctx) {
            http.access = [Access::Unavailable; 4];
            d.filter_state = super::filter_state_of(http);
        }
        call!(self, done, "on_done", ctx, ctx as i32, vec![]);
        call!(self, delete, "on_delete", ctx, ctx as i32, vec![]);
        let st = self.store.data_mut();
        st.http.remove(&ctx);
        st.root_of.remove(&ctx);
        st.deferred.retain(|x| !matches!(x, Deferred::LocalReply { ctx: c, .. } | Deferred::Continue { ctx: c, .. } | Deferred::Close { ctx: c } if *c == ctx));
    }

    pub(super) fn apply(&mut self, d: &mut StreamDriver, item: Deferred) {
        match item {
            Deferred::Continue { response, .. } => self.resume(d, usize::from(response)),
            Deferred::Close { .. } => self.reset(d),
            Deferred::LocalReply { reply, .. } => self.local_reply(d, reply, true),
            Deferred::RootDone { root } => self.delete_root(root),
        }
    }

    /// Runs the actions guests queued (continue/close/local reply/proxy_done), in call order.
    pub(crate) fn run_deferred(&mut self) {
        self.run_deferred_with(None);
    }

    pub(super) fn run_deferred_with(&mut self, mut current: Option<&mut StreamDriver>) {
        loop {
            let items = std::mem::take(&mut self.store.data_mut().deferred);
            if items.is_empty() {
                return;
            }
            for item in items {
                let ctx = match &item {
                    Deferred::Continue { ctx, .. }
                    | Deferred::Close { ctx }
                    | Deferred::LocalReply { ctx, .. } => Some(*ctx),
                    Deferred::RootDone { root } => {
                        self.delete_root(*root);
                        None
                    }
                };
                let Some(ctx) = ctx else { continue };
                match current.as_deref_mut() {
                    Some(d) if d.ctx == Some(ctx) => self.apply(d, item),
                    _ => {
                        let id = self
                            .streams
                            .iter()
                            .find(|(_, s)| s.ctx == Some(ctx))
                            .map(|(k, _)| *k);
                        if let Some(id) = id {
                            if let Some(mut other) = self.streams.remove(&id) {
                                self.apply(&mut other, item);
                                self.streams.insert(id, other);
                            }
                        }
                    }
                }
            }
        }
    }
}
