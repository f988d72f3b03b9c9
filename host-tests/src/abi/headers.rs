//! Header maps: the [`Headers`] type, the proxy-wasm pair encoding, and the header hostcalls
//! with Envoy's availability rules (a map is reachable only inside its own callback; a callout
//! answer's maps only while `proxy_on_http_call_response` runs).

use super::{guard, memory, HostResult, Status};
use crate::state::{Access, HttpCtx, VmState, REQ_TRAILERS, RESP_TRAILERS};
use wasmtime::{Caller, Linker};

/// `MapType` of the callout answer's headers and trailers.
const CALLOUT_HEADERS: usize = 6;
const CALLOUT_TRAILERS: usize = 7;

/// An ordered header list; duplicates are separate entries, like an Envoy header map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl Headers {
    /// Builds a map from `(key, value)` pairs, keeping order and case.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Headers(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into().into_bytes()))
                .collect(),
        )
    }
    /// First value of `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    /// Every value of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    }
    /// Appends an entry (key lowercased, as Envoy stores it).
    pub fn add(&mut self, key: &str, value: &str) {
        self.add_bytes(key, value.as_bytes());
    }
    /// Adds a value that need not be UTF-8 (Envoy header values are bytes).
    pub fn add_bytes(&mut self, key: &str, value: &[u8]) {
        self.0.push((key.to_ascii_lowercase(), value.to_vec()));
    }
    /// The first value of `key` as bytes.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }
    /// Removes every entry of `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
    }
    /// Sets `key` to one value: replaces the first entry in place, drops duplicates, or appends.
    pub fn replace(&mut self, key: &str, value: &str) {
        self.replace_bytes(key, value.as_bytes());
    }
    /// Sets `key` to one value that need not be UTF-8.
    pub fn replace_bytes(&mut self, key: &str, value: &[u8]) {
        let key = key.to_ascii_lowercase();
        let mut seen = false;
        self.0.retain_mut(|(k, v)| {
            if *k != key {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.to_vec();
            true
        });
        if !seen {
            self.0.push((key, value.to_vec()));
        }
    }
    /// Number of entries (what `num_headers` reports to callbacks).
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Envoy's `byteSize()`: the sum of key and value lengths.
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// Encodes pairs in the proxy-wasm layout (count, lengths, then `key\0value\0`).
pub fn encode_pairs<V: AsRef<[u8]>>(pairs: &[(String, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(s)
}

fn take_u32(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let b: [u8; 4] = take(buf, pos, 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// Decodes the pair layout like cpp-host's `PairsUtil::toPairs`: anything malformed (over
/// 1 MiB, over 1024 pairs, overruns, missing NULs, trailing bytes) is an empty list.
pub fn decode_pairs(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    decode_strict(buf).unwrap_or_default()
}

fn decode_strict(buf: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if buf.is_empty() || buf.len() > 1 << 20 {
        return None;
    }
    let mut pos = 0;
    let n = take_u32(buf, &mut pos)?;
    if n > 1024 {
        return None;
    }
    let mut lens = Vec::with_capacity(n);
    for _ in 0..n {
        lens.push((take_u32(buf, &mut pos)?, take_u32(buf, &mut pos)?));
    }
    let mut out = Vec::with_capacity(n);
    for (kl, vl) in lens {
        let k = take(buf, &mut pos, kl)?;
        if take(buf, &mut pos, 1)? != [0] {
            return None;
        }
        let v = take(buf, &mut pos, vl)?;
        if take(buf, &mut pos, 1)? != [0] {
            return None;
        }
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
    }
    (pos == buf.len()).then_some(out)
}

/// Result of looking a map up for the effective context.
enum Lookup<'a> {
    Map(&'a mut Headers),
    Status(Status),
}

/// Finds map `map` for reading (`write == false`) or writing, applying Envoy's rules.
fn lookup(st: &mut VmState, map: i32, write: bool) -> Lookup<'_> {
    let Ok(idx) = usize::try_from(map) else {
        return Lookup::Status(Status::BadArgument);
    };
    match idx {
        0..=3 => stream_map(st.http_mut(), idx, write),
        CALLOUT_HEADERS | CALLOUT_TRAILERS => callout_map(st, idx),
        // gRPC metadata exists only inside gRPC callbacks, which never run here.
        _ => Lookup::Status(Status::BadArgument),
    }
}

/// Maps 6 and 7: the callout answer's headers and trailers, reachable only while
/// `proxy_on_http_call_response` runs (from any context of that root). Trailers exist only if
/// the answer had some; after a reset neither exists.
fn callout_map(st: &mut VmState, idx: usize) -> Lookup<'_> {
    let root = st.effective_root();
    let Some(response) = st
        .answering
        .as_mut()
        .filter(|a| a.root == root)
        .and_then(|a| a.response.as_mut())
    else {
        return Lookup::Status(Status::BadArgument);
    };
    let map = if idx == CALLOUT_HEADERS {
        Some(&mut response.headers)
    } else {
        response.trailers.as_mut()
    };
    map.map_or(Lookup::Status(Status::BadArgument), Lookup::Map)
}

/// Maps 0..=3 of the effective stream context.
fn stream_map(http: Option<&mut HttpCtx>, idx: usize, write: bool) -> Lookup<'_> {
    let Some(h) = http else {
        return Lookup::Status(Status::BadArgument);
    };
    let trailer_side = match idx {
        REQ_TRAILERS => Some(0),
        RESP_TRAILERS => Some(1),
        _ => None,
    };
    if let Some(side) = trailer_side {
        if h.may_create_trailers.get(side).copied().unwrap_or(false) {
            let access = h.access.get_mut(idx);
            if let Some(a) = access {
                *a = Access::ReadWrite;
            }
            if let Some(slot) = h.maps.get_mut(idx) {
                if slot.is_none() {
                    *slot = Some(Headers::default());
                }
            }
        }
    }
    let access = h.access.get(idx).copied().unwrap_or(Access::Unavailable);
    match access {
        Access::Unavailable => Lookup::Status(Status::BadArgument),
        Access::ReadOnly if write => Lookup::Status(Status::BadArgument),
        _ => match h.maps.get_mut(idx).and_then(Option::as_mut) {
            Some(m) => Lookup::Map(m),
            None if access == Access::ReadOnly => Lookup::Status(Status::NotFound),
            None => Lookup::Status(Status::BadArgument),
        },
    }
}

fn read_str(c: &Caller<'_, VmState>, ptr: i32, len: i32) -> Option<String> {
    memory::read(c, ptr, len)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, VmState>, map: i32, kp: i32, kl: i32, rp: i32, rl: i32| -> HostResult {
            guard(&c, "proxy_get_header_map_value")?;
            let Some(key) = read_str(&c, kp, kl) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let value = match lookup(c.data_mut(), map, false) {
                Lookup::Status(s) => return Ok(s.code()),
                Lookup::Map(m) => match m.get_bytes(&key) {
                    Some(v) => v.to_vec(),
                    None => return Ok(Status::NotFound.code()),
                },
            };
            Ok(memory::copy_out(&mut c, &value, rp, rl)?.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, VmState>, map: i32, rp: i32, rl: i32| -> HostResult {
            guard(&c, "proxy_get_header_map_pairs")?;
            if !(0..=7).contains(&map) {
                return Ok(Status::BadArgument.code());
            }
            let bytes = match lookup(c.data_mut(), map, false) {
                Lookup::Map(m) if !m.is_empty() => encode_pairs(&m.0),
                _ => Vec::new(),
            };
            Ok(memory::copy_out(&mut c, &bytes, rp, rl)?.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, VmState>, map: i32, p: i32, l: i32| -> HostResult {
            guard(&c, "proxy_set_header_map_pairs")?;
            let Ok(raw) = memory::read(&c, p, l) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let pairs = decode_pairs(&raw);
            match lookup(c.data_mut(), map, true) {
                Lookup::Status(s) => Ok(s.code()),
                Lookup::Map(m) => {
                    m.0.clear();
                    for (k, v) in pairs {
                        m.add_bytes(&k, &v);
                    }
                    Ok(Status::Ok.code())
                }
            }
        },
    )?;
    type Edit = fn(&mut Headers, &str, &[u8]);
    let edits: [(&str, Edit); 2] = [
        ("proxy_add_header_map_value", |m, k, v| m.add_bytes(k, v)),
        ("proxy_replace_header_map_value", |m, k, v| {
            m.replace_bytes(k, v)
        }),
    ];
    for (name, edit) in edits {
        linker.func_wrap(
            "env",
            name,
            move |mut c: Caller<'_, VmState>,
                  map: i32,
                  kp: i32,
                  kl: i32,
                  vp: i32,
                  vl: i32|
                  -> HostResult {
                guard(&c, name)?;
                let (Some(k), Ok(v)) = (read_str(&c, kp, kl), memory::read(&c, vp, vl)) else {
                    return Ok(Status::InvalidMemoryAccess.code());
                };
                match lookup(c.data_mut(), map, true) {
                    Lookup::Status(s) => Ok(s.code()),
                    Lookup::Map(m) => {
                        edit(m, &k, &v);
                        Ok(Status::Ok.code())
                    }
                }
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, VmState>, map: i32, kp: i32, kl: i32| -> HostResult {
            guard(&c, "proxy_remove_header_map_value")?;
            let Some(k) = read_str(&c, kp, kl) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            match lookup(c.data_mut(), map, true) {
                Lookup::Status(s) => Ok(s.code()),
                Lookup::Map(m) => {
                    m.remove(&k);
                    Ok(Status::Ok.code())
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Caller<'_, VmState>, map: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_get_header_map_size")?;
            let size = match lookup(c.data_mut(), map, false) {
                Lookup::Status(s) => return Ok(s.code()),
                Lookup::Map(m) => m.byte_size() as u32,
            };
            if memory::write_u32(&mut c, ret, size).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
