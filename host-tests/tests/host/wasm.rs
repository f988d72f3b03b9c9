//! A tiny binary-format assembler for hand-made modules (no `wat` feature needed).

fn leb(mut n: u32, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn name(s: &str, out: &mut Vec<u8>) {
    leb(s.len() as u32, out);
    out.extend_from_slice(s.as_bytes());
}

fn section(id: u8, items: &[Vec<u8>], out: &mut Vec<u8>) {
    let mut body = Vec::new();
    leb(items.len() as u32, &mut body);
    for i in items {
        body.extend_from_slice(i);
    }
    out.push(id);
    leb(body.len() as u32, out);
    out.extend_from_slice(&body);
}

const I32: u8 = 0x7f;

/// A module importing `imports` (module, name, params, results; all i32), exporting memory,
/// `proxy_on_memory_allocate` (returns 1024) and, if `marker`, `proxy_abi_version_0_2_1`.
pub fn module(imports: &[(&str, &str, usize, usize)], marker: bool) -> Vec<u8> {
    module_with(imports, marker, "proxy_on_memory_allocate")
}

/// Like [`module`], exporting the allocator under `alloc_name`.
pub fn module_with(
    imports: &[(&str, &str, usize, usize)],
    marker: bool,
    alloc_name: &str,
) -> Vec<u8> {
    let mut types = Vec::new();
    for &(_, _, p, r) in imports {
        let mut t = vec![0x60];
        leb(p as u32, &mut t);
        t.extend(std::iter::repeat_n(I32, p));
        leb(r as u32, &mut t);
        t.extend(std::iter::repeat_n(I32, r));
        types.push(t);
    }
    let alloc_ty = types.len() as u32;
    types.push(vec![0x60, 1, I32, 1, I32]);
    types.push(vec![0x60, 0, 0]);
    let mut imps = Vec::new();
    for (i, &(m, n, _, _)) in imports.iter().enumerate() {
        let mut e = Vec::new();
        name(m, &mut e);
        name(n, &mut e);
        e.push(0);
        leb(i as u32, &mut e);
        imps.push(e);
    }
    let mut funcs = Vec::new();
    let mut f = Vec::new();
    leb(alloc_ty, &mut f);
    funcs.push(f);
    let mut f = Vec::new();
    leb(alloc_ty + 1, &mut f);
    funcs.push(f);
    let base = imports.len() as u32;
    let mut exports = Vec::new();
    let mut e = Vec::new();
    name("memory", &mut e);
    e.extend([2, 0]);
    exports.push(e);
    let mut e = Vec::new();
    name(alloc_name, &mut e);
    e.push(0);
    leb(base, &mut e);
    exports.push(e);
    if marker {
        let mut e = Vec::new();
        name("proxy_abi_version_0_2_1", &mut e);
        e.push(0);
        leb(base + 1, &mut e);
        exports.push(e);
    }
    // alloc: i32.const 1024; end   /   marker: end
    let code = vec![vec![5, 0, 0x41, 0x80, 0x08, 0x0b], vec![2, 0, 0x0b]];
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &types, &mut out);
    if !imps.is_empty() {
        section(2, &imps, &mut out);
    }
    section(3, &funcs, &mut out);
    section(5, &[vec![0, 1]], &mut out);
    section(7, &exports, &mut out);
    section(10, &code, &mut out);
    out
}

/// A function of a hand-made module: export name, param and result counts (all i32), body
/// instructions (without locals and the final `end`).
pub struct Func<'a> {
    pub export: &'a str,
    pub params: usize,
    pub results: usize,
    pub body: Vec<u8>,
}

fn functype(p: usize, r: usize) -> Vec<u8> {
    let mut t = vec![0x60];
    leb(p as u32, &mut t);
    t.extend(std::iter::repeat_n(I32, p));
    leb(r as u32, &mut t);
    t.extend(std::iter::repeat_n(I32, r));
    t
}

/// A module with `imports` (function indices 0..), then `funcs`, one page of memory holding
/// `data` at offset 0, and the export `memory`. Function `i` of `funcs` has index
/// `imports.len() + i` for `call`.
pub fn custom(imports: &[(&str, &str, usize, usize)], funcs: &[Func<'_>], data: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut imps = Vec::new();
    for &(m, n, p, r) in imports {
        let mut e = Vec::new();
        name(m, &mut e);
        name(n, &mut e);
        e.push(0);
        leb(types.len() as u32, &mut e);
        types.push(functype(p, r));
        imps.push(e);
    }
    let mut fidx = Vec::new();
    let mut exports = Vec::new();
    let mut e = Vec::new();
    name("memory", &mut e);
    e.extend([2, 0]);
    exports.push(e);
    let mut code = Vec::new();
    for (i, f) in funcs.iter().enumerate() {
        let mut t = Vec::new();
        leb(types.len() as u32, &mut t);
        types.push(functype(f.params, f.results));
        fidx.push(t);
        let mut e = Vec::new();
        name(f.export, &mut e);
        e.push(0);
        leb((imports.len() + i) as u32, &mut e);
        exports.push(e);
        let mut body = vec![0];
        body.extend_from_slice(&f.body);
        body.push(0x0b);
        let mut c = Vec::new();
        leb(body.len() as u32, &mut c);
        c.extend(body);
        code.push(c);
    }
    let mut seg = vec![0, 0x41, 0, 0x0b];
    leb(data.len() as u32, &mut seg);
    seg.extend_from_slice(data);
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &types, &mut out);
    if !imps.is_empty() {
        section(2, &imps, &mut out);
    }
    section(3, &fidx, &mut out);
    section(5, &[vec![0, 1]], &mut out);
    section(7, &exports, &mut out);
    section(10, &code, &mut out);
    section(11, &[seg], &mut out);
    out
}

/// `i32.const v` (small non-negative values).
pub fn i32c(v: u32) -> Vec<u8> {
    let mut out = vec![0x41];
    // Signed LEB128 for values below 2^31.
    let mut n = v;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 && byte & 0x40 == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// `call f`.
pub fn call(f: u32) -> Vec<u8> {
    let mut out = vec![0x10];
    leb(f, &mut out);
    out
}

/// `drop`.
pub const DROP: u8 = 0x1a;
