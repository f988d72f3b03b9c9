//! The HTTP stream state machine: what Envoy's filter manager does around one plugin for one
//! stream (header/body/trailer callbacks, header and body pauses, buffering and its limit,
//! deferred continue/close/local reply, local replies re-entering the response callbacks,
//! failure handling, and on_log → on_done → on_delete).

use crate::abi::headers::Headers;
use crate::abi::reply;
use crate::callbacks::Outcome;
use crate::state::{Access, Deferred, HttpCtx, PluginReply};
use crate::vm::{call, Vm};

/// Handle of one HTTP stream on a [`Vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(u64);

/// What the upstream (the test's backend) received from the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamView {
    /// Request headers after the filter, once forwarded.
    pub headers: Option<Headers>,
    /// Request body bytes forwarded so far.
    pub body: Vec<u8>,
    /// Request trailers, if forwarded.
    pub trailers: Option<Headers>,
    /// The request ended (end_of_stream passed the filter).
    pub complete: bool,
    /// The upstream request was abandoned (local reply or reset before it completed).
    pub reset: bool,
}

/// A local reply the client got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReplyInfo {
    /// HTTP status passed to the reply.
    pub status: u32,
    /// Response code details (e.g. `wasm_fail_stream`, `request_payload_too_large`).
    pub details: String,
    /// True if the plugin sent it (`proxy_send_local_response`), false if Envoy did.
    pub from_plugin: bool,
}

/// What the downstream client saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientView {
    /// `:status` of the response headers the client got, 0 if none.
    pub status: u32,
    /// Response headers as the client got them.
    pub headers: Option<Headers>,
    /// Response body bytes received so far.
    pub body: Vec<u8>,
    /// Response trailers, if any.
    pub trailers: Option<Headers>,
    /// The response ended normally.
    pub complete: bool,
    /// The stream was reset (client reset, `proxy_close_stream`, reply after headers sent).
    pub reset: bool,
    /// Set when the response is a local reply.
    pub local_reply: Option<LocalReplyInfo>,
}

/// A snapshot of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamView {
    /// The plugin's context id, once created.
    pub ctx: Option<u32>,
    /// What the client saw.
    pub client: ClientView,
    /// What the upstream received.
    pub upstream: UpstreamView,
    /// The filter holds the request (headers or body stopped, waiting for continue/more data).
    pub request_stopped: bool,
    /// The filter holds the response.
    pub response_stopped: bool,
    /// on_log/on_done/on_delete have run (or the stream ended while the VM was failed).
    pub finished: bool,
    /// The filter is bypassed for this stream (fail-open after a VM failure).
    pub bypassed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum HeadersState {
    #[default]
    Pending,
    StopAll,
    StopIteration,
    Forwarded,
}

#[derive(Debug, Default)]
struct Side {
    headers: HeadersState,
    /// Headers as they arrived (used when the filter is bypassed and has no context).
    raw_headers: Option<Headers>,
    headers_eos: bool,
    eos_in: bool,
    holding: bool,
    held: Vec<u8>,
    held_eos: bool,
    held_trailers: Option<Headers>,
    buffer: Vec<u8>,
    body_stopped: bool,
    trailers_stopped: bool,
    complete: bool,
}

/// Host-side progress of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamDriver {
    ctx: Option<u32>,
    bypass: bool,
    sides: [Side; 2],
    request_headers: Headers,
    upstream: UpstreamView,
    client: ClientView,
    finished: bool,
}

impl StreamDriver {
    fn side(&mut self, dir: usize) -> &mut Side {
        let [req, resp] = &mut self.sides;
        if dir == 0 {
            req
        } else {
            resp
        }
    }
}

/// Header-callback action after Envoy's translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Continue,
    StopIteration,
    StopAll,
    Buffer,
    Watermark,
    NoBuffer,
}

const HEADERS: [usize; 2] = [0, 2];
const TRAILERS: [usize; 2] = [1, 3];

fn status_of(h: &Headers) -> u32 {
    h.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl Vm {
    fn http(&mut self, ctx: Option<u32>) -> Option<&mut HttpCtx> {
        ctx.and_then(|c| self.store.data_mut().http.get_mut(&c))
    }

    fn local_reply_pending(&self, ctx: Option<u32>) -> bool {
        self.store
            .data()
            .deferred
            .iter()
            .any(|d| matches!(d, Deferred::LocalReply { ctx: c, .. } if Some(*c) == ctx))
    }

    /// Opens a stream; the plugin context is created lazily by the first callback.
    pub fn open_stream(&mut self) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        self.streams.insert(id, StreamDriver::default());
        id
    }

    /// A snapshot of stream `id` (panics on an unknown id).
    pub fn stream(&self, id: StreamId) -> StreamView {
        let Some(d) = self.streams.get(&id) else {
            panic!("unknown stream {id:?}");
        };
        let stopped = |s: &Side| {
            !s.complete
                && (matches!(
                    s.headers,
                    HeadersState::StopAll | HeadersState::StopIteration
                ) || s.body_stopped
                    || s.trailers_stopped)
        };
        StreamView {
            ctx: d.ctx,
            client: d.client.clone(),
            upstream: d.upstream.clone(),
            request_stopped: !d.finished && stopped(&d.sides[0]),
            response_stopped: !d.finished && stopped(&d.sides[1]),
            finished: d.finished,
            bypassed: d.bypass,
        }
    }

    fn with_stream(&mut self, id: StreamId, f: impl FnOnce(&mut Vm, &mut StreamDriver)) {
        let Some(mut d) = self.streams.remove(&id) else {
            panic!("unknown stream {id:?}");
        };
        f(self, &mut d);
        self.run_deferred_with(Some(&mut d));
        self.streams.insert(id, d);
    }

    /// Downstream sends request headers (`end_stream` for a body-less request).
    pub fn send_request_headers(&mut self, id: StreamId, headers: &Headers, end_stream: bool) {
        self.with_stream(id, |vm, d| vm.headers_in(d, 0, headers.clone(), end_stream));
    }
    /// Downstream sends one request data frame (an empty frame with `end_stream` is normal).
    pub fn send_request_body(&mut self, id: StreamId, data: &[u8], end_stream: bool) {
        self.with_stream(id, |vm, d| vm.body_in(d, 0, data, end_stream));
    }
    /// Downstream sends request trailers (ends the request).
    pub fn send_request_trailers(&mut self, id: StreamId, trailers: &Headers) {
        self.with_stream(id, |vm, d| vm.trailers_in(d, 0, trailers.clone()));
    }
    /// Upstream sends response headers.
    pub fn send_response_headers(&mut self, id: StreamId, headers: &Headers, end_stream: bool) {
        self.with_stream(id, |vm, d| vm.headers_in(d, 1, headers.clone(), end_stream));
    }
    /// Upstream sends one response data frame.
    pub fn send_response_body(&mut self, id: StreamId, data: &[u8], end_stream: bool) {
        self.with_stream(id, |vm, d| vm.body_in(d, 1, data, end_stream));
    }
    /// Upstream sends response trailers (ends the response).
    pub fn send_response_trailers(&mut self, id: StreamId, trailers: &Headers) {
        self.with_stream(id, |vm, d| vm.trailers_in(d, 1, trailers.clone()));
    }
    /// The client resets the stream (or goes away): on_log, on_done, on_delete without eos.
    pub fn reset_stream(&mut self, id: StreamId) {
        self.with_stream(id, |vm, d| vm.reset(d));
    }

    fn create_context(&mut self, d: &mut StreamDriver) {
        let ctx = self.alloc_ctx();
        let root = self.root;
        let now = self.store.data().shared.clock.now_nanos();
        let st = self.store.data_mut();
        st.root_of.insert(ctx, root);
        st.http.insert(ctx, HttpCtx::new(now, u64::from(ctx)));
        d.ctx = Some(ctx);
        if let Outcome::Trapped = call!(
            self,
            context_create,
            "on_context_create",
            ctx,
            (ctx as i32, root as i32),
            vec![i64::from(root)]
        ) {
            self.on_trap(d, 0);
        }
    }

    fn headers_in(&mut self, d: &mut StreamDriver, dir: usize, headers: Headers, eos: bool) {
        if d.finished {
            return;
        }
        if dir == 0 {
            d.request_headers = headers.clone();
            if self.failed {
                self.failed_at_start(d);
            } else {
                self.create_context(d);
            }
        }
        let side = d.side(dir);
        side.headers_eos = eos;
        side.eos_in = eos;
        if d.finished {
            return;
        }
        let h = HEADERS.get(dir).copied().unwrap_or(0);
        let n = headers.len() as i32;
        d.side(dir).raw_headers = Some(headers.clone());
        if let Some(http) = self.http(d.ctx) {
            if dir == 1 {
                http.response_code = Some(status_of(&headers));
            }
            if let Some(slot) = http.maps.get_mut(h) {
                *slot = Some(headers);
            }
            if let Some(a) = http.access.get_mut(h) {
                *a = Access::ReadWrite;
            }
        }
        if d.bypass {
            self.forward_headers(d, dir);
            self.maybe_finish(d);
            return;
        }
        let ctx = d.ctx.unwrap_or(0);
        let out = if dir == 0 {
            call!(
                self,
                request_headers,
                "on_request_headers",
                ctx,
                (ctx as i32, n, i32::from(eos)),
                vec![i64::from(n), i64::from(eos)]
            )
        } else {
            call!(
                self,
                response_headers,
                "on_response_headers",
                ctx,
                (ctx as i32, n, i32::from(eos)),
                vec![i64::from(n), i64::from(eos)]
            )
        };
        let act = match out {
            Outcome::Trapped | Outcome::Skipped => return self.on_trap(d, dir),
            _ if self.local_reply_pending(d.ctx) => Act::StopAll,
            Outcome::Done(0) | Outcome::Missing | Outcome::Done(2) => Act::Continue,
            Outcome::Done(1)
                if self
                    .store
                    .data()
                    .shared
                    .settings
                    .allow_on_headers_stop_iteration =>
            {
                Act::StopIteration
            }
            Outcome::Done(_) => Act::StopAll,
        };
        match act {
            Act::Continue => self.forward_headers(d, dir),
            Act::StopIteration => d.side(dir).headers = HeadersState::StopIteration,
            _ => d.side(dir).headers = HeadersState::StopAll,
        }
        self.maybe_finish(d);
    }

    fn forward_headers(&mut self, d: &mut StreamDriver, dir: usize) {
        let h = HEADERS.get(dir).copied().unwrap_or(0);
        let mut headers = None;
        if let Some(http) = self.http(d.ctx) {
            if let Some(a) = http.access.get_mut(h) {
                *a = Access::Unavailable;
            }
            headers = http.maps.get(h).cloned().flatten();
        }
        let side = d.side(dir);
        let headers = headers
            .or_else(|| side.raw_headers.clone())
            .unwrap_or_default();
        side.headers = HeadersState::Forwarded;
        let eos = side.headers_eos;
        if dir == 0 {
            d.upstream.headers = Some(headers);
        } else {
            d.client.status = status_of(&headers);
            d.client.headers = Some(headers);
        }
        if eos {
            self.complete(d, dir);
        }
    }

    fn target_body(d: &mut StreamDriver, dir: usize) -> &mut Vec<u8> {
        if dir == 0 {
            &mut d.upstream.body
        } else {
            &mut d.client.body
        }
    }

    fn complete(&mut self, d: &mut StreamDriver, dir: usize) {
        let t = TRAILERS.get(dir).copied().unwrap_or(1);
        let trailers = self
            .http(d.ctx)
            .and_then(|h| h.maps.get(t).cloned().flatten());
        d.side(dir).complete = true;
        let (slot, done) = if dir == 0 {
            (&mut d.upstream.trailers, &mut d.upstream.complete)
        } else {
            (&mut d.client.trailers, &mut d.client.complete)
        };
        *done = true;
        if slot.is_none() {
            *slot = trailers.filter(|t| !t.is_empty());
        }
    }

    fn body_in(&mut self, d: &mut StreamDriver, dir: usize, data: &[u8], eos: bool) {
        if d.finished || d.side(dir).complete {
            return;
        }
        d.side(dir).eos_in |= eos;
        if d.bypass {
            Self::target_body(d, dir).extend_from_slice(data);
            if eos {
                self.complete(d, dir);
            }
            self.maybe_finish(d);
            return;
        }
        match d.side(dir).headers {
            HeadersState::Pending => {}
            HeadersState::StopAll => {
                let limit = self.store.data().shared.settings.buffer_limit;
                let side = d.side(dir);
                side.holding = true;
                side.held.extend_from_slice(data);
                side.held_eos |= eos;
                if side.held.len() > limit {
                    self.too_large(d, dir);
                }
            }
            _ => self.deliver_body(d, dir, data, eos),
        }
    }

    fn deliver_body(&mut self, d: &mut StreamDriver, dir: usize, data: &[u8], eos: bool) {
        let mut buf = std::mem::take(&mut d.side(dir).buffer);
        buf.extend_from_slice(data);
        let len = buf.len() as i32;
        if let Some(http) = self.http(d.ctx) {
            if let Some(slot) = http.body.get_mut(dir) {
                *slot = Some(buf);
            }
            if let Some(c) = http.may_create_trailers.get_mut(dir) {
                *c = eos;
            }
        }
        let ctx = d.ctx.unwrap_or(0);
        let out = if dir == 0 {
            call!(
                self,
                request_body,
                "on_request_body",
                ctx,
                (ctx as i32, len, i32::from(eos)),
                vec![i64::from(len), i64::from(eos)]
            )
        } else {
            call!(
                self,
                response_body,
                "on_response_body",
                ctx,
                (ctx as i32, len, i32::from(eos)),
                vec![i64::from(len), i64::from(eos)]
            )
        };
        let mut buf = Vec::new();
        if let Some(http) = self.http(d.ctx) {
            buf = http
                .body
                .get_mut(dir)
                .and_then(Option::take)
                .unwrap_or_default();
            if let Some(c) = http.may_create_trailers.get_mut(dir) {
                *c = false;
            }
            let t = TRAILERS.get(dir).copied().unwrap_or(1);
            if let Some(a) = http.access.get_mut(t) {
                *a = Access::Unavailable;
            }
        }
        let act = match out {
            Outcome::Trapped | Outcome::Skipped => {
                d.side(dir).buffer = buf;
                return self.on_trap(d, dir);
            }
            _ if self.local_reply_pending(d.ctx) => Act::Buffer,
            Outcome::Done(0) | Outcome::Missing => Act::Continue,
            Outcome::Done(1) => Act::Buffer,
            Outcome::Done(2) => Act::Watermark,
            Outcome::Done(_) => Act::NoBuffer,
        };
        let limit = self.store.data().shared.settings.buffer_limit;
        let side = d.side(dir);
        side.body_stopped = act != Act::Continue;
        match act {
            Act::Continue => {
                if side.headers == HeadersState::StopIteration {
                    self.forward_headers(d, dir);
                }
                Self::target_body(d, dir).extend_from_slice(&buf);
                if eos {
                    self.complete(d, dir);
                }
            }
            Act::NoBuffer => {}
            _ => {
                side.buffer = buf;
                if act == Act::Buffer && side.buffer.len() > limit {
                    self.too_large(d, dir);
                }
            }
        }
        self.maybe_finish(d);
    }

    fn trailers_in(&mut self, d: &mut StreamDriver, dir: usize, trailers: Headers) {
        if d.finished || d.side(dir).complete {
            return;
        }
        d.side(dir).eos_in = true;
        let t = TRAILERS.get(dir).copied().unwrap_or(1);
        let n = trailers.len() as i32;
        if let Some(http) = self.http(d.ctx) {
            if let Some(slot) = http.maps.get_mut(t) {
                *slot = Some(trailers.clone());
            }
            if let Some(a) = http.access.get_mut(t) {
                *a = Access::ReadWrite;
            }
        }
        if d.bypass {
            let buf = std::mem::take(&mut d.side(dir).buffer);
            Self::target_body(d, dir).extend_from_slice(&buf);
            self.complete(d, dir);
            self.maybe_finish(d);
            return;
        }
        if d.side(dir).headers == HeadersState::StopAll {
            d.side(dir).held_trailers = Some(trailers);
            return;
        }
        let ctx = d.ctx.unwrap_or(0);
        let out = if dir == 0 {
            call!(
                self,
                request_trailers,
                "on_request_trailers",
                ctx,
                (ctx as i32, n),
                vec![i64::from(n)]
            )
        } else {
            call!(
                self,
                response_trailers,
                "on_response_trailers",
                ctx,
                (ctx as i32, n),
                vec![i64::from(n)]
            )
        };
        if let Some(a) = self.http(d.ctx).and_then(|h| h.access.get_mut(t)) {
            *a = Access::Unavailable;
        }
        let go = match out {
            Outcome::Trapped | Outcome::Skipped => return self.on_trap(d, dir),
            _ if self.local_reply_pending(d.ctx) => false,
            Outcome::Done(0) | Outcome::Missing => true,
            Outcome::Done(_) => false,
        };
        if go {
            self.flush(d, dir);
        } else {
            d.side(dir).trailers_stopped = true;
        }
        self.maybe_finish(d);
    }

    /// Forwards headers (if held), the buffered body, and ends the side if it ended downstream.
    fn flush(&mut self, d: &mut StreamDriver, dir: usize) {
        if matches!(
            d.side(dir).headers,
            HeadersState::StopAll | HeadersState::StopIteration
        ) {
            self.forward_headers(d, dir);
        }
        let side = d.side(dir);
        side.body_stopped = false;
        side.trailers_stopped = false;
        let buf = std::mem::take(&mut side.buffer);
        let ended = side.eos_in;
        Self::target_body(d, dir).extend_from_slice(&buf);
        if ended {
            self.complete(d, dir);
        }
    }

    /// `proxy_continue_stream`: resume a side stopped by the plugin.
    fn resume(&mut self, d: &mut StreamDriver, dir: usize) {
        if d.finished || d.side(dir).complete {
            return;
        }
        let side = d.side(dir);
        match side.headers {
            HeadersState::Pending => {}
            HeadersState::StopAll | HeadersState::StopIteration
                if side.holding || side.held_trailers.is_some() =>
            {
                let held = std::mem::take(&mut side.held);
                let held_eos = side.held_eos;
                let trailers = side.held_trailers.take();
                let holding = std::mem::replace(&mut side.holding, false);
                self.forward_headers(d, dir);
                if holding {
                    self.deliver_body(d, dir, &held, held_eos);
                }
                if let Some(t) = trailers {
                    self.trailers_in(d, dir, t);
                }
            }
            _ => self.flush(d, dir),
        }
        self.maybe_finish(d);
    }

    fn too_large(&mut self, d: &mut StreamDriver, dir: usize) {
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

    fn envoy_reply(&mut self, d: &mut StreamDriver, status: u32, body: &str, details: &str) {
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
    fn local_reply(&mut self, d: &mut StreamDriver, reply: PluginReply, from_plugin: bool) {
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
    fn on_trap(&mut self, d: &mut StreamDriver, dir: usize) {
        if self.store.data().shared.settings.fail_open {
            d.bypass = true;
            let side = d.side(dir);
            if side.holding {
                let held = std::mem::take(&mut side.held);
                side.buffer.extend_from_slice(&held);
                side.holding = false;
            }
            self.flush(d, dir);
            self.maybe_finish(d);
        } else {
            self.envoy_reply(d, 503, "", "wasm_fail_stream");
        }
    }

    fn failed_at_start(&mut self, d: &mut StreamDriver) {
        if self.store.data().shared.settings.fail_open {
            d.bypass = true;
        } else {
            self.envoy_reply(d, 503, "", "wasm_fail_stream");
        }
    }

    fn reset(&mut self, d: &mut StreamDriver) {
        if d.finished {
            return;
        }
        d.client.reset = true;
        if d.upstream.headers.is_some() && !d.upstream.complete {
            d.upstream.reset = true;
        }
        self.finish(d);
    }

    fn maybe_finish(&mut self, d: &mut StreamDriver) {
        if d.client.complete || d.client.reset {
            self.finish(d);
        }
    }

    /// on_log (maps read-only), on_done, on_delete; then the context is gone.
    fn finish(&mut self, d: &mut StreamDriver) {
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
        }
        call!(self, done, "on_done", ctx, ctx as i32, vec![]);
        call!(self, delete, "on_delete", ctx, ctx as i32, vec![]);
        let st = self.store.data_mut();
        st.http.remove(&ctx);
        st.root_of.remove(&ctx);
        st.deferred.retain(|x| !matches!(x, Deferred::LocalReply { ctx: c, .. } | Deferred::Continue { ctx: c, .. } | Deferred::Close { ctx: c } if *c == ctx));
    }

    fn apply(&mut self, d: &mut StreamDriver, item: Deferred) {
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

    fn run_deferred_with(&mut self, mut current: Option<&mut StreamDriver>) {
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
