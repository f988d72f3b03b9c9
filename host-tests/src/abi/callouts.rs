//! `proxy_http_call` and `proxy_get_status` with Envoy's checks and statuses. The answer is
//! delivered later (see `events.rs`); this file only accepts or refuses the call and records it.

use super::headers::{decode_pairs, Headers};
use super::{guard, memory, HostResult, Status};
use crate::callouts::{Callout, Route};
use crate::events::{resolve, PendingCall};
use crate::state::VmState;
use wasmtime::{Caller, Linker};

/// The raw arguments of one `proxy_http_call`, read from guest memory.
struct Request {
    cluster: String,
    headers: Vec<u8>,
    body: Vec<u8>,
    trailers: Vec<u8>,
    timeout_ms: u32,
}

/// Envoy's `Context::httpCall`: the checks in its order, then a token and the record.
fn dispatch(st: &mut VmState, req: Request) -> Result<u32, Status> {
    // Envoy takes the timeout as a C `int`: anything above i32::MAX is negative there.
    if req.timeout_ms > i32::MAX as u32 {
        return Err(Status::BadArgument);
    }
    let responder = match st.shared.clusters.route(&req.cluster) {
        Route::Unknown => return Err(Status::BadArgument),
        Route::NoEndpoints => None,
        Route::Answer(r) => Some(r),
    };
    let mut headers = Headers::default();
    for (k, v) in decode_pairs(&req.headers) {
        headers.add_bytes(&k, &v);
    }
    if [":path", ":method", ":authority"]
        .iter()
        .any(|k| headers.get_bytes(k).is_none())
    {
        return Err(Status::BadArgument);
    }
    let token = st.callouts.next_token();
    let Some(responder) = responder else {
        // No endpoint: the router answers inline, so the async client returns no request and
        // Envoy reports InternalFailure; the answer it had deferred finds no handler.
        return Err(Status::InternalFailure);
    };
    if !req.body.is_empty() {
        headers.replace("content-length", &req.body.len().to_string());
    }
    let mut trailers = Headers::default();
    for (k, v) in decode_pairs(&req.trailers) {
        trailers.add_bytes(&k, &v);
    }
    let clock = st.shared.clock.clone();
    let record = Callout {
        token,
        vm: st.label.clone(),
        context: st.effective_ctx,
        root: st.effective_root(),
        cluster: req.cluster,
        headers,
        body: req.body,
        trailers,
        timeout_ms: req.timeout_ms,
        dispatched_at_nanos: clock.now_nanos(),
    };
    let now = clock.monotonic_nanos();
    let answer = responder.map(|r| {
        let mut r = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r(&record)
    });
    let timeout_at = (req.timeout_ms > 0)
        .then(|| now.saturating_add(i64::from(req.timeout_ms).saturating_mul(1_000_000)));
    st.callouts.pending.insert(
        token,
        PendingCall {
            root: record.root,
            dispatched_mono: now,
            timeout_at,
            answer: answer.and_then(|a| resolve(a, now)),
        },
    );
    st.callouts.history.push(record);
    Ok(token)
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, VmState>,
         cp: i32,
         cl: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32|
         -> HostResult {
            guard(&c, "proxy_http_call")?;
            let (Ok(cluster), Ok(headers), Ok(body), Ok(trailers)) = (
                memory::read(&c, cp, cl),
                memory::read(&c, hp, hl),
                memory::read(&c, bp, bl),
                memory::read(&c, tp, tl),
            ) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            // cpp-host writes a zero token first, to check the pointer before starting.
            if memory::write_u32(&mut c, ret, 0).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            let req = Request {
                cluster: String::from_utf8_lossy(&cluster).into_owned(),
                headers,
                body,
                trailers,
                timeout_ms: timeout as u32,
            };
            match dispatch(c.data_mut(), req) {
                Ok(token) => {
                    if memory::write_u32(&mut c, ret, token).is_err() {
                        return Ok(Status::InvalidMemoryAccess.code());
                    }
                    Ok(Status::Ok.code())
                }
                Err(s) => Ok(s.code()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Caller<'_, VmState>, code: i32, mp: i32, ml: i32| -> HostResult {
            guard(&c, "proxy_get_status")?;
            let st = c.data();
            let (status, message) = st
                .roots
                .get(&st.effective_root())
                .map(|r| r.status.clone())
                .unwrap_or_default();
            if memory::write_u32(&mut c, code, status).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(memory::copy_out(&mut c, message.as_bytes(), mp, ml)?.code())
        },
    )?;
    Ok(())
}
