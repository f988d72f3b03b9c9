//! The raw `env.proxy_*` imports this guest uses, each wrapped so that it returns the host's
//! status code unchanged (the point of this guest is to see those codes).

use std::ptr::null_mut;

mod raw {
    extern "C" {
        pub fn proxy_log(level: u32, p: *const u8, l: usize) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            kp: *const u8,
            kl: usize,
            rp: *mut *mut u8,
            rl: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, rp: *mut *mut u8, rl: *mut usize) -> u32;
        pub fn proxy_get_buffer_bytes(
            ty: u32,
            start: usize,
            max: usize,
            rp: *mut *mut u8,
            rl: *mut usize,
        ) -> u32;
        pub fn proxy_http_call(
            cp: *const u8,
            cl: usize,
            hp: *const u8,
            hl: usize,
            bp: *const u8,
            bl: usize,
            tp: *const u8,
            tl: usize,
            timeout_ms: u32,
            token: *mut u32,
        ) -> u32;
        pub fn proxy_set_effective_context(ctx: u32) -> u32;
        pub fn proxy_get_status(code: *mut u32, mp: *mut *mut u8, ml: *mut usize) -> u32;
        pub fn proxy_continue_stream(ty: u32) -> u32;
        pub fn proxy_send_local_response(
            status: u32,
            dp: *const u8,
            dl: usize,
            bp: *const u8,
            bl: usize,
            hp: *const u8,
            hl: usize,
            grpc: i32,
        ) -> u32;
        pub fn proxy_register_shared_queue(np: *const u8, nl: usize, id: *mut u32) -> u32;
        pub fn proxy_resolve_shared_queue(
            vp: *const u8,
            vl: usize,
            np: *const u8,
            nl: usize,
            id: *mut u32,
        ) -> u32;
        pub fn proxy_enqueue_shared_queue(id: u32, vp: *const u8, vl: usize) -> u32;
        pub fn proxy_dequeue_shared_queue(id: u32, rp: *mut *mut u8, rl: *mut usize) -> u32;
        pub fn proxy_get_shared_data(
            kp: *const u8,
            kl: usize,
            rp: *mut *mut u8,
            rl: *mut usize,
            cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            kp: *const u8,
            kl: usize,
            vp: *const u8,
            vl: usize,
            cas: u32,
        ) -> u32;
    }
}

/// Request headers, request trailers, ..., callout response headers and trailers.
pub const REQUEST_HEADERS: u32 = 0;
pub const CALLOUT_HEADERS: u32 = 6;
pub const CALLOUT_TRAILERS: u32 = 7;
pub const REQUEST_BODY: u32 = 0;
pub const CALLOUT_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

/// Takes ownership of bytes the host allocated through `proxy_on_memory_allocate`.
fn owned(p: *mut u8, l: usize) -> Vec<u8> {
    if p.is_null() || l == 0 {
        Vec::new()
    } else {
        // SAFETY: the host allocated exactly `l` bytes at `p` with our allocator.
        unsafe { Vec::from_raw_parts(p, l, l) }
    }
}

pub fn log(msg: &str) {
    // SAFETY: pointer and length of a live string.
    unsafe { raw::proxy_log(2, msg.as_ptr(), msg.len()) };
}

pub fn header(map: u32, key: &str) -> (u32, Vec<u8>) {
    let (mut p, mut l) = (null_mut(), 0);
    // SAFETY: valid key slice and out-pointers.
    let s =
        unsafe { raw::proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut p, &mut l) };
    (s, owned(p, l))
}

pub fn pairs(map: u32) -> (u32, Vec<(String, String)>) {
    let (mut p, mut l) = (null_mut(), 0);
    // SAFETY: valid out-pointers.
    let s = unsafe { raw::proxy_get_header_map_pairs(map, &mut p, &mut l) };
    (s, decode_pairs(&owned(p, l)))
}

pub fn buffer(ty: u32, max: usize) -> (u32, Vec<u8>) {
    let (mut p, mut l) = (null_mut(), 0);
    // SAFETY: valid out-pointers.
    let s = unsafe { raw::proxy_get_buffer_bytes(ty, 0, max, &mut p, &mut l) };
    (s, owned(p, l))
}

/// `proxy_http_call`; returns (status, token).
pub fn http_call(
    cluster: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: u32,
) -> (u32, u32) {
    let h = encode_pairs(headers);
    let t = encode_pairs(&[]);
    let mut token = 0;
    // SAFETY: every slice is live for the call; the token pointer is valid.
    let s = unsafe {
        raw::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            h.as_ptr(),
            h.len(),
            body.as_ptr(),
            body.len(),
            t.as_ptr(),
            t.len(),
            timeout_ms,
            &mut token,
        )
    };
    (s, token)
}

pub fn set_effective_context(ctx: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { raw::proxy_set_effective_context(ctx) }
}

/// `proxy_get_status`: (hostcall status, code, message).
pub fn status() -> (u32, u32, String) {
    let (mut code, mut p, mut l) = (0, null_mut(), 0);
    // SAFETY: valid out-pointers.
    let s = unsafe { raw::proxy_get_status(&mut code, &mut p, &mut l) };
    (s, code, String::from_utf8_lossy(&owned(p, l)).into_owned())
}

pub fn continue_request() -> u32 {
    // SAFETY: no pointers.
    unsafe { raw::proxy_continue_stream(0) }
}

pub fn local_reply(code: u32, body: &str, headers: &[(String, String)]) -> u32 {
    let details = "probe_reply";
    let h = encode_pairs(headers);
    // SAFETY: every slice is live for the call.
    unsafe {
        raw::proxy_send_local_response(
            code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    }
}

pub fn register_queue(name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: valid name slice and out-pointer.
    let s = unsafe { raw::proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (s, id)
}

pub fn resolve_queue(name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: valid slices (empty vm_id = this VM's) and out-pointer.
    let s = unsafe {
        raw::proxy_resolve_shared_queue(std::ptr::null(), 0, name.as_ptr(), name.len(), &mut id)
    };
    (s, id)
}

pub fn enqueue(id: u32, value: &str) -> u32 {
    // SAFETY: valid value slice.
    unsafe { raw::proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) }
}

pub fn dequeue(id: u32) -> (u32, Vec<u8>) {
    let (mut p, mut l) = (null_mut(), 0);
    // SAFETY: valid out-pointers.
    let s = unsafe { raw::proxy_dequeue_shared_queue(id, &mut p, &mut l) };
    (s, owned(p, l))
}

/// Adds one to the shared counter `key` (CAS loop) and returns the new value.
pub fn shared_increment(key: &str) -> u64 {
    loop {
        let (mut p, mut l, mut cas) = (null_mut(), 0, 0);
        // SAFETY: valid key slice and out-pointers.
        let s = unsafe {
            raw::proxy_get_shared_data(key.as_ptr(), key.len(), &mut p, &mut l, &mut cas)
        };
        let current: u64 = if s == 0 {
            String::from_utf8_lossy(&owned(p, l)).parse().unwrap_or(0)
        } else {
            0
        };
        let next = (current + 1).to_string();
        // SAFETY: valid slices.
        let s = unsafe {
            raw::proxy_set_shared_data(key.as_ptr(), key.len(), next.as_ptr(), next.len(), cas)
        };
        if s == 0 {
            return current + 1;
        }
    }
}

pub fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes) as usize)
}

pub fn decode_pairs(b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(n) = u32_at(b, 0) else { return out };
    let mut lens = Vec::new();
    for i in 0..n {
        let (Some(k), Some(v)) = (u32_at(b, 4 + i * 8), u32_at(b, 8 + i * 8)) else {
            return out;
        };
        lens.push((k, v));
    }
    let mut at = 4 + n * 8;
    for (k, v) in lens {
        let key = b.get(at..at + k).unwrap_or_default();
        at += k + 1;
        let value = b.get(at..at + v).unwrap_or_default();
        at += v + 1;
        out.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    out
}
