//! The HTTP stream state machine: what Envoy's filter manager does around one plugin for one
//! stream (header/body/trailer callbacks, header and body pauses, buffering and its limit,
//! deferred continue/close/local reply, local replies re-entering the response callbacks,
//! failure handling, and on_log → on_done → on_delete).

mod ending;
mod view;

pub use view::{ClientView, LocalReplyInfo, StreamId, StreamView, UpstreamView};

use std::collections::BTreeMap;

use crate::abi::headers::Headers;
use crate::callbacks::Outcome;
use crate::state::{Access, Deferred, HttpCtx};
use crate::vm::{call, Vm};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum HeadersState {
    #[default]
    Pending,
    StopAll,
    StopIteration,
    Forwarded,
}

#[derive(Debug, Default)]
pub(super) struct Side {
    pub(super) headers: HeadersState,
    /// Headers as they arrived (used when the filter is bypassed and has no context).
    pub(super) raw_headers: Option<Headers>,
    pub(super) headers_eos: bool,
    pub(super) eos_in: bool,
    pub(super) holding: bool,
    /// Headers returned StopAllIterationAndBuffer: held data counts against the buffer limit.
    pub(super) hold_limited: bool,
    pub(super) held: Vec<u8>,
    pub(super) held_eos: bool,
    /// Frames that arrived once `held` reached the watermark (Envoy leaves them unread).
    pub(super) held_later: Vec<(Vec<u8>, bool)>,
    pub(super) held_trailers: Option<Headers>,
    pub(super) buffer: Vec<u8>,
    pub(super) body_stopped: bool,
    pub(super) trailers_stopped: bool,
    pub(super) complete: bool,
}

/// Host-side progress of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamDriver {
    pub(super) ctx: Option<u32>,
    pub(super) bypass: bool,
    pub(super) sides: [Side; 2],
    pub(super) request_headers: Headers,
    pub(super) upstream: UpstreamView,
    pub(super) client: ClientView,
    pub(super) finished: bool,
    /// What the plugin wrote with `proxy_set_property`, kept once the context is gone (an
    /// access log runs after on_log and still sees it).
    pub(super) filter_state: BTreeMap<String, Vec<u8>>,
}

impl StreamDriver {
    pub(super) fn side(&mut self, dir: usize) -> &mut Side {
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
pub(super) enum Act {
    Continue,
    StopIteration,
    StopAll,
    Buffer,
    Watermark,
    NoBuffer,
}

pub(super) const HEADERS: [usize; 2] = [0, 2];
pub(super) const TRAILERS: [usize; 2] = [1, 3];

pub(super) fn status_of(h: &Headers) -> u32 {
    h.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl Vm {
    pub(super) fn http(&mut self, ctx: Option<u32>) -> Option<&mut HttpCtx> {
        ctx.and_then(|c| self.store.data_mut().http.get_mut(&c))
    }

    pub(super) fn local_reply_pending(&self, ctx: Option<u32>) -> bool {
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

    /// Forgets stream `id` on the host side (its snapshot is gone afterwards), so long runs do
    /// not keep every stream. Meant for finished streams; unknown ids are ignored.
    pub fn forget_stream(&mut self, id: StreamId) {
        self.streams.remove(&id);
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
            filter_state: match d.ctx.and_then(|ctx| self.store.data().http.get(&ctx)) {
                Some(http) => filter_state_of(http),
                None => d.filter_state.clone(),
            },
        }
    }

    pub(super) fn with_stream(&mut self, id: StreamId, f: impl FnOnce(&mut Vm, &mut StreamDriver)) {
        let Some(mut d) = self.streams.remove(&id) else {
            panic!("unknown stream {id:?}");
        };
        f(self, &mut d);
        self.run_deferred_with(Some(&mut d));
        self.streams.insert(id, d);
        if !self.batching {
            self.run_due();
        }
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
    /// The upstream resets the stream. Before response headers reached the client, Envoy's
    /// router answers 503 (through this plugin's response callbacks); afterwards the client
    /// stream is reset. Either way the stream ends with on_log, on_done, on_delete.
    pub fn upstream_reset(&mut self, id: StreamId) {
        self.with_stream(id, |vm, d| vm.upstream_reset_inner(d));
    }

    pub(super) fn create_context(&mut self, d: &mut StreamDriver) {
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

    pub(super) fn headers_in(
        &mut self,
        d: &mut StreamDriver,
        dir: usize,
        headers: Headers,
        eos: bool,
    ) {
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
            // 3 = StopAllIterationAndBuffer (overflow => 413/500); 1 (rewritten), 4 and above
            // = StopAllIterationAndWatermark (overflow => flow control: the stream just waits).
            Outcome::Done(3) => Act::Buffer,
            Outcome::Done(_) => Act::StopAll,
        };
        match act {
            Act::Continue => self.forward_headers(d, dir),
            Act::StopIteration => d.side(dir).headers = HeadersState::StopIteration,
            _ => {
                let side = d.side(dir);
                side.headers = HeadersState::StopAll;
                side.hold_limited = act == Act::Buffer;
            }
        }
        self.maybe_finish(d);
    }

    pub(super) fn forward_headers(&mut self, d: &mut StreamDriver, dir: usize) {
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

    pub(super) fn target_body(d: &mut StreamDriver, dir: usize) -> &mut Vec<u8> {
        if dir == 0 {
            &mut d.upstream.body
        } else {
            &mut d.client.body
        }
    }

    pub(super) fn complete(&mut self, d: &mut StreamDriver, dir: usize) {
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

    pub(super) fn body_in(&mut self, d: &mut StreamDriver, dir: usize, data: &[u8], eos: bool) {
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
                if side.hold_limited {
                    side.held.extend_from_slice(data);
                    side.held_eos |= eos;
                    if side.held.len() > limit {
                        self.too_large(d, dir);
                    }
                } else {
                    hold_to_watermark(side, data, eos, limit.saturating_mul(2));
                }
            }
            _ => self.deliver_body(d, dir, data, eos),
        }
    }

    pub(super) fn deliver_body(
        &mut self,
        d: &mut StreamDriver,
        dir: usize,
        data: &[u8],
        eos: bool,
    ) {
        let mut buf = self.take_buffer(d, dir);
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
                self.park_buffer(d, dir, buf);
                return self.on_trap(d, dir);
            }
            // The plugin's own reply wins over the buffer limit: stop without the check.
            _ if self.local_reply_pending(d.ctx) => Act::Watermark,
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
                let too_large = act == Act::Buffer && buf.len() > limit;
                // Held bytes stay reachable (and writable) from the plugin's other callbacks,
                // e.g. a callout answer delivered to this context, until they pass.
                self.park_buffer(d, dir, buf);
                if too_large {
                    self.too_large(d, dir);
                }
            }
        }
        self.maybe_finish(d);
    }

    pub(super) fn trailers_in(&mut self, d: &mut StreamDriver, dir: usize, trailers: Headers) {
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
            let buf = self.take_buffer(d, dir);
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
    pub(super) fn flush(&mut self, d: &mut StreamDriver, dir: usize) {
        if matches!(
            d.side(dir).headers,
            HeadersState::StopAll | HeadersState::StopIteration
        ) {
            self.forward_headers(d, dir);
        }
        let buf = self.take_buffer(d, dir);
        let side = d.side(dir);
        side.body_stopped = false;
        side.trailers_stopped = false;
        let ended = side.eos_in;
        Self::target_body(d, dir).extend_from_slice(&buf);
        if ended {
            self.complete(d, dir);
        }
    }

    /// The body bytes Envoy holds for side `dir`: parked in the context while the plugin holds
    /// the body (so its other callbacks can read them), or on the driver.
    pub(super) fn take_buffer(&mut self, d: &mut StreamDriver, dir: usize) -> Vec<u8> {
        let buf = std::mem::take(&mut d.side(dir).buffer);
        let parked = self
            .http(d.ctx)
            .and_then(|h| h.body.get_mut(dir))
            .and_then(Option::take);
        match parked {
            Some(mut p) => {
                p.extend_from_slice(&buf);
                p
            }
            None => buf,
        }
    }

    /// Keeps `buf` as side `dir`'s held body: in the context when there is one.
    pub(super) fn park_buffer(&mut self, d: &mut StreamDriver, dir: usize, buf: Vec<u8>) {
        match self.http(d.ctx).and_then(|h| h.body.get_mut(dir)) {
            Some(slot) => *slot = Some(buf),
            None => d.side(dir).buffer = buf,
        }
    }

    /// `proxy_continue_stream`: resume a side stopped by the plugin.
    pub(super) fn resume(&mut self, d: &mut StreamDriver, dir: usize) {
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
                let later = std::mem::take(&mut side.held_later);
                let held_eos = side.held_eos && later.is_empty();
                let trailers = side.held_trailers.take();
                let holding = std::mem::replace(&mut side.holding, false);
                self.forward_headers(d, dir);
                if holding {
                    self.deliver_body(d, dir, &held, held_eos);
                }
                for (frame, eos) in later {
                    self.body_in(d, dir, &frame, eos);
                }
                if let Some(t) = trailers {
                    self.trailers_in(d, dir, t);
                }
            }
            _ => self.flush(d, dir),
        }
        self.maybe_finish(d);
    }
}

/// Holds one frame that arrived while the headers are stopped with a watermark: Envoy keeps
/// reading until about `watermark` bytes are held (measured: 2 MiB for a 1 MiB buffer limit),
/// then stops reading; what the client sends after that stays in the socket and arrives, frame
/// by frame, once the stream resumes.
fn hold_to_watermark(side: &mut Side, data: &[u8], eos: bool, watermark: usize) {
    let room = watermark.saturating_sub(side.held.len());
    if !side.held_later.is_empty() {
        side.held_later.push((data.to_vec(), eos));
    } else if data.len() <= room {
        side.held.extend_from_slice(data);
        side.held_eos |= eos;
    } else {
        let (now, later) = data.split_at(room);
        side.held.extend_from_slice(now);
        side.held_later.push((later.to_vec(), eos));
    }
}

/// The filter state of a stream context, by name (names and values as written).
pub(super) fn filter_state_of(http: &HttpCtx) -> BTreeMap<String, Vec<u8>> {
    http.filter_state
        .iter()
        .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), value.clone()))
        .collect()
}
