//! The request side of metering every path: the request body's size and output cap kept
//! for the charge of a response without usage, the stream-usage rewrite of OpenAI-shaped
//! completions (`stream_usage.rs`) while Envoy holds their body, and the token counts some
//! responses give in headers (Bedrock InvokeModel).
//!
//! The rewrite changes the body's length after its headers went upstream, and Envoy does
//! not correct `content-length`: in Envoy 1.40 a body rewritten from 81 to 121 bytes went
//! to an HTTP/1.1 upstream still announced as 81, so the upstream read a truncated JSON
//! document and took the other 40 bytes for the start of the next request on the
//! connection. So a request that may be rewritten loses its `content-length` at request
//! headers; upstream it is then framed by the protocol (chunked in HTTP/1.1, the stream's
//! end in HTTP/2), which the Envoy harness checks.

use super::{Env, Flow, RequestSize, Rewrite};
use crate::clamp::{self, CapField};
use crate::metrics::{Metric, MetricsSink};
use crate::request_body::{BodyModel, RequestSniffer};
use crate::stream_usage;
use crate::usage::{invoke_model_usage, INVOKE_MODEL_TOKEN_HEADERS};

impl Flow {
    /// At request headers, for a request with a body: whether its body is held for the
    /// stream-usage rewrite (then the glue takes `content-length` off the request, see
    /// [`Flow::holds_request_body`]).
    pub(super) fn plan_rewrite(&mut self, path: &str, env: &mut Env<'_>) {
        let metering = &self.policy.metering;
        // Only a body whose length is announced is held: Envoy answers 413 once what a
        // filter holds passes its buffer limit, and a body sent in chunks could reach it in
        // one large frame before its size showed.
        let within_bound = self
            .content_length
            .is_some_and(|length| length <= metering.max_rewrite_body_bytes);
        if self.policy.reservation.clamp_output && self.meter.post && within_bound {
            self.meter.clamp = CapField::of_path(path);
            if self.meter.clamp.is_some() {
                self.meter.rewrite = Rewrite::Holding;
            }
        }
        if !metering.inject_stream_usage
            || !self.meter.post
            || !stream_usage::is_completions_path(path)
        {
            return;
        }
        if within_bound {
            self.meter.rewrite = Rewrite::Holding;
            self.meter.usage_rewrite = true;
        } else {
            env.metrics.add(Metric::StreamUsageUnchecked, 1);
        }
    }

    /// A held body that outgrew the rewrite's bound (more bytes than its `content-length`
    /// said; Envoy's codecs do not let that happen): it passes on unread from now on.
    pub(super) fn check_rewrite_bound(&mut self, env: &mut Env<'_>) {
        if self.meter.rewrite != Rewrite::Holding {
            return;
        }
        let seen = self.sniffer.as_ref().map_or(0, RequestSniffer::body_bytes);
        if seen > self.policy.metering.max_rewrite_body_bytes {
            self.meter.rewrite = Rewrite::Off;
            env.metrics.add(Metric::StreamUsageUnchecked, 1);
        }
    }

    /// The request body is whole: its size and output cap are kept, and its last top-level
    /// `"model"` returned. A held body becomes ready for the rewrite.
    pub(super) fn body_complete(&mut self, env: &mut Env<'_>) -> BodyModel {
        self.check_rewrite_bound(env);
        if self.meter.rewrite == Rewrite::Holding {
            self.meter.rewrite = Rewrite::Ready;
        }
        // Read in place and dropped there: moving the scanner out (about 1 KiB) would cost
        // more than what is read from it.
        let Some(sniffer) = self.sniffer.as_ref() else {
            return BodyModel::Absent;
        };
        self.meter.request = Some(RequestSize {
            bytes: sniffer.body_bytes(),
            max_output_tokens: sniffer.max_output_tokens(),
        });
        let model = sniffer.model();
        self.sniffer = None;
        model
    }

    /// What has been read of a request body that never ended (the stream was cut).
    pub(super) fn request_size_so_far(&self) -> RequestSize {
        self.sniffer
            .as_ref()
            .map_or_else(RequestSize::default, |sniffer| RequestSize {
                bytes: sniffer.body_bytes(),
                max_output_tokens: sniffer.max_output_tokens(),
            })
    }

    /// Whether Envoy must keep holding the request body (the glue answers the body
    /// callback with Pause): a completions request within the bound, not yet whole, or an
    /// admin request's body (`flow/admin.rs`), which never goes upstream. Right
    /// after request headers, this also says the request must lose its `content-length`
    /// (the rewrite may change the length, and Envoy forwards the header as it came).
    pub fn holds_request_body(&self) -> bool {
        self.meter.rewrite == Rewrite::Holding || self.is_admin_body()
    }

    /// Whether the whole request body is held and waits for [`Flow::rewrite_request_body`].
    pub fn request_body_to_rewrite(&self) -> bool {
        self.meter.rewrite == Rewrite::Ready
    }

    /// The whole held request body as it must go upstream: `Some` with the new body when
    /// `stream_options.include_usage` was added, `None` when it goes as it is. Once only.
    pub fn rewrite_request_body(
        &mut self,
        body: &[u8],
        metrics: &mut dyn MetricsSink,
    ) -> Option<Vec<u8>> {
        if self.meter.rewrite != Rewrite::Ready {
            return None;
        }
        self.meter.rewrite = Rewrite::Off;
        let clamped = match (self.meter.clamp, self.meter.clamped_output) {
            (Some(field), Some(cap)) => clamp::with_output_cap(body, field, cap),
            _ => None,
        };
        let body = clamped.as_deref().unwrap_or(body);
        let with_usage = if self.meter.usage_rewrite {
            stream_usage::with_usage_requested(body)
        } else {
            None
        };
        if with_usage.is_some() {
            metrics.add(Metric::StreamUsageInjected, 1);
            log::debug!(
                "#{} streaming request: stream_options.include_usage added",
                self.context_id
            );
        }
        with_usage.or(clamped)
    }

    /// The response headers Bedrock InvokeModel reports its token counts in, when the
    /// request went to a Bedrock path (the glue reads them only then).
    pub fn token_count_headers(&self) -> &'static [&'static str] {
        if self.meter.bedrock && self.scanner.is_some() {
            &INVOKE_MODEL_TOKEN_HEADERS
        } else {
            &[]
        }
    }

    /// Those headers' values, as (name, value) pairs: the usage charged if the body gives
    /// none.
    pub fn on_token_count_headers<'a>(
        &mut self,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) {
        self.meter.header_usage = invoke_model_usage(headers);
    }
}
