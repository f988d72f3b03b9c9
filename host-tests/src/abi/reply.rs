//! `proxy_send_local_response`, `proxy_continue_stream`, `proxy_close_stream` (all deferred
//! until the callback returns) and how Envoy builds a local reply's headers.

use super::headers::{decode_pairs, Headers};
use super::{guard, memory, HostResult, Status};
use crate::state::{Deferred, PluginReply, VmState};
use wasmtime::{Caller, Linker};

/// A reply as it leaves Envoy's local-reply builder (before the plugin's response callbacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuiltReply {
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// Builds reply headers like Envoy's `prepareLocalReply`: `:status`, the plugin's pairs
/// (lowercased, added), then content-length / content-type fix-ups; gRPC requests get a
/// trailers-only reply; HEAD gets no body.
pub(crate) fn build(reply: &PluginReply, request: Option<&Headers>) -> BuiltReply {
    let content_type = request.and_then(|h| h.get("content-type")).unwrap_or("");
    if content_type.starts_with("application/grpc") {
        let mut h = Headers::default();
        h.add(":status", "200");
        h.add("content-type", "application/grpc");
        let grpc = if (0..=16).contains(&reply.grpc_status) {
            reply.grpc_status
        } else {
            http_to_grpc(reply.status)
        };
        h.add("grpc-status", &grpc.to_string());
        if !reply.body.is_empty() {
            h.add("grpc-message", &percent_encode(&reply.body));
        }
        for (k, v) in &reply.headers.0 {
            h.add_bytes(k, v);
        }
        return BuiltReply {
            headers: h,
            body: Vec::new(),
        };
    }
    let mut h = Headers::default();
    h.add(":status", &reply.status.to_string());
    for (k, v) in &reply.headers.0 {
        h.add_bytes(k, v);
    }
    if reply.body.is_empty() {
        h.remove("content-length");
        h.remove("content-type");
    } else {
        h.replace("content-length", &reply.body.len().to_string());
        if h.get("content-type").is_none() {
            h.add("content-type", "text/plain");
        }
    }
    let head = request.and_then(|r| r.get(":method")) == Some("HEAD");
    BuiltReply {
        headers: h,
        body: if head { Vec::new() } else { reply.body.clone() },
    }
}

fn http_to_grpc(status: u32) -> i32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

fn percent_encode(body: &[u8]) -> String {
    body.iter()
        .map(|&b| {
            if (b' '..=b'~').contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Envoy replaces whitespace in response code details with `_`.
pub(crate) fn sanitize_details(details: &str) -> String {
    details
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, VmState>,
         status: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc_status: i32|
         -> HostResult {
            guard(&c, "proxy_send_local_response")?;
            let (Ok(details), Ok(body), Ok(hdrs)) = (
                memory::read(&c, dp, dl),
                memory::read(&c, bp, bl),
                memory::read(&c, hp, hl),
            ) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let st = c.data_mut();
            let ctx = st.effective_ctx;
            if st.http.contains_key(&ctx) {
                let reply = PluginReply {
                    status: status as u32,
                    details: sanitize_details(&String::from_utf8_lossy(&details)),
                    body,
                    headers: Headers(decode_pairs(&hdrs)),
                    grpc_status,
                };
                st.deferred.push(Deferred::LocalReply { ctx, reply });
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Caller<'_, VmState>, ty: i32| -> HostResult {
            guard(&c, "proxy_continue_stream")?;
            let st = c.data_mut();
            let ctx = st.effective_ctx;
            match ty {
                0 | 1 => {
                    if st.http.contains_key(&ctx) {
                        st.deferred.push(Deferred::Continue {
                            ctx,
                            response: ty == 1,
                        });
                    }
                    Ok(Status::Ok.code())
                }
                2 => Ok(Status::Ok.code()),
                3 => Ok(Status::Unimplemented.code()),
                _ => Ok(Status::BadArgument.code()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: Caller<'_, VmState>, ty: i32| -> HostResult {
            guard(&c, "proxy_close_stream")?;
            let st = c.data_mut();
            let ctx = st.effective_ctx;
            match ty {
                0..=2 => {
                    if st.http.contains_key(&ctx) {
                        st.deferred.push(Deferred::Close { ctx });
                    }
                    Ok(Status::Ok.code())
                }
                3 => Ok(Status::Unimplemented.code()),
                _ => Ok(Status::BadArgument.code()),
            }
        },
    )?;
    Ok(())
}
