//! `proxy_get_property` / `proxy_set_property` with Envoy's attribute table and encodings:
//! strings raw, integers 8-byte little-endian, bools one byte, timestamps int64 nanoseconds,
//! maps in the pair encoding. Header-derived `request.*` attributes read the request header
//! map, so they are NotFound once that map is gone (response phase, root contexts).

use super::headers::encode_pairs;
use super::{guard, memory, HostResult, Status};
use crate::state::{Access, HttpCtx, VmState, REQ_HEADERS, RESP_HEADERS};
use wasmtime::{Caller, Linker};

/// Address the test host reports for the downstream peer.
pub const SOURCE_ADDRESS: &str = "127.0.0.1:40000";
/// Address the test host reports for the listener.
pub const DESTINATION_ADDRESS: &str = "127.0.0.1:10000";

fn int(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn map_of(h: &HttpCtx, idx: usize) -> Option<&crate::abi::headers::Headers> {
    if h.access.get(idx).copied().unwrap_or(Access::Unavailable) == Access::Unavailable {
        return None;
    }
    h.maps.get(idx).and_then(Option::as_ref)
}

fn request(h: &HttpCtx, field: &str, rest: &[&str]) -> Option<Vec<u8>> {
    match field {
        "time" => return Some(int(h.start_nanos)),
        "protocol" => return Some(b"HTTP/1.1".to_vec()),
        _ => {}
    }
    let m = map_of(h, REQ_HEADERS)?;
    let header = |k: &str| m.get(k).map(|v| v.as_bytes().to_vec());
    let path = m.get(":path").unwrap_or("");
    match field {
        "path" => header(":path"),
        "url_path" => Some(path.split('?').next().unwrap_or("").as_bytes().to_vec()),
        "query" => Some(
            path.split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
        ),
        "host" => header(":authority"),
        "scheme" => header(":scheme"),
        "method" => header(":method"),
        "referer" => header("referer"),
        "useragent" => header("user-agent"),
        "id" => header("x-request-id"),
        "headers" => headers_value(m, rest),
        _ => None,
    }
}

fn headers_value(m: &crate::abi::headers::Headers, rest: &[&str]) -> Option<Vec<u8>> {
    match rest.first() {
        Some(name) => {
            let all = m.get_all(name);
            (!all.is_empty()).then(|| all.join(",").into_bytes())
        }
        None => Some(encode_pairs(&m.0)),
    }
}

fn response(h: &HttpCtx, field: &str, rest: &[&str]) -> Option<Vec<u8>> {
    match field {
        "code" => h.response_code.map(|c| int(i64::from(c))),
        "code_details" => h.code_details.clone().map(String::into_bytes),
        "headers" => headers_value(map_of(h, RESP_HEADERS)?, rest),
        _ => None,
    }
}

/// Looks `path` (segments joined by NUL) up for the effective context.
pub(crate) fn lookup(state: &mut VmState, path: &[u8]) -> Result<Vec<u8>, Status> {
    let text = String::from_utf8_lossy(path).into_owned();
    let segs: Vec<&str> = text.split('\0').collect();
    let first = segs.first().copied().unwrap_or("");
    let rest = segs.get(1..).unwrap_or(&[]);
    let settings = &state.shared.settings;
    let plugin = match first {
        "plugin_name" => Some(settings.plugin_name.clone().into_bytes()),
        "plugin_root_id" => Some(settings.root_id.clone().into_bytes()),
        "plugin_vm_id" => Some(settings.vm_id.clone().into_bytes()),
        _ => None,
    };
    if let Some(v) = plugin {
        return if rest.is_empty() {
            Ok(v)
        } else {
            Err(Status::NotFound)
        };
    }
    let Some(h) = state.http_mut() else {
        return Err(Status::NotFound);
    };
    let field = rest.first().copied().unwrap_or("");
    let more = rest.get(1..).unwrap_or(&[]);
    let found = match first {
        "request" => request(h, field, more),
        "response" => response(h, field, more),
        "source" | "destination" => {
            let addr = if first == "source" {
                SOURCE_ADDRESS
            } else {
                DESTINATION_ADDRESS
            };
            match field {
                "address" => Some(addr.as_bytes().to_vec()),
                "port" => addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<i64>().ok())
                    .map(int),
                _ => None,
            }
        }
        "connection" => match field {
            "id" => Some(int(h.stream_seq as i64)),
            "mtls" => Some(vec![0]),
            _ => None,
        },
        _ => h.filter_state.get(path).cloned(),
    };
    found.ok_or(Status::NotFound)
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, VmState>, pp: i32, pl: i32, rp: i32, rl: i32| -> HostResult {
            guard(&c, "proxy_get_property")?;
            let Ok(path) = memory::read(&c, pp, pl) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            match lookup(c.data_mut(), &path) {
                Ok(v) => Ok(memory::copy_out(&mut c, &v, rp, rl)?.code()),
                Err(s) => Ok(s.code()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Caller<'_, VmState>, pp: i32, pl: i32, vp: i32, vl: i32| -> HostResult {
            guard(&c, "proxy_set_property")?;
            let (Ok(path), Ok(value)) = (memory::read(&c, pp, pl), memory::read(&c, vp, vl)) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            match c.data_mut().http_mut() {
                Some(h) => {
                    h.filter_state.insert(path, value);
                    Ok(Status::Ok.code())
                }
                None => Ok(Status::NotFound.code()),
            }
        },
    )?;
    Ok(())
}
