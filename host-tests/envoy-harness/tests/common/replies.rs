//! Replies quoted in the documentation (a fenced block after `<!-- envoy-reply: NAME -->`)
//! against the live ones: status line, header names and values (the `date`, and the time
//! left in `retry-after` and in the quota reset headers, excepted; `connection`, which
//! depends on the client, ignored), and the JSON body (error `type`, `code`, `param`, and
//! `message` with its timestamps masked). On a mismatch the live reply is printed in the
//! documentation's format, ready to paste (`PRINT_README_REPLIES=1` prints every live reply).

use super::shipped::{read, repo_path};
use envoy_harness::client::Response;
use serde_json::Value;
use std::collections::BTreeMap;

/// A reply as quoted in a README.
#[derive(Debug)]
struct Quoted {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

fn quoted_replies(readme: &str) -> BTreeMap<String, Quoted> {
    let mut out = BTreeMap::new();
    let mut rest = readme;
    while let Some(at) = rest.find("<!-- envoy-reply:") {
        let after = &rest[at + "<!-- envoy-reply:".len()..];
        let end = after.find("-->").expect("unterminated marker");
        let name = after[..end].trim().to_string();
        let after = &after[end..];
        let open = after.find("```").expect("a fenced block after the marker");
        let block = &after[open..];
        let body_start = block.find('\n').unwrap() + 1;
        let close = block[body_start..].find("```").unwrap() + body_start;
        let text = &block[body_start..close];
        let (head, body) = text.split_once("\n\n").expect("head, blank line, body");
        let mut lines = head.lines();
        let status_line = lines.next().unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let body: Value = serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("{name}: quoted body is not JSON: {e}"));
        out.insert(
            name,
            Quoted {
                status,
                headers,
                body,
            },
        );
        rest = &block[close..];
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The live reply in the README's format.
fn render(r: &Response) -> String {
    let mut s = format!("HTTP/1.1 {} {}\n", r.status, reason(r.status));
    for (k, v) in r.headers.iter().filter(|(k, _)| k != "connection") {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push('\n');
    s.push_str(&r.text());
    s
}

/// RFC 3339 UTC timestamps (`2026-11-28T23:00:00Z`) replaced by `<time>`.
fn mask_times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let window = b.get(i..i + 20);
        let is_time = window.is_some_and(|w| {
            w.iter().enumerate().all(|(j, c)| match j {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
        });
        if is_time {
            out.push_str("<time>");
            i += 20;
        } else {
            out.push(char::from(b.get(i).copied().unwrap_or(b'?')));
            i += 1;
        }
    }
    out
}

pub fn check(readme_rel: &str, live: &BTreeMap<String, Response>) {
    if std::env::var_os("PRINT_README_REPLIES").is_some() {
        for (name, r) in live {
            eprintln!(
                "<!-- envoy-reply: {name} -->\n```http\n{}\n```\n",
                render(r)
            );
        }
    }
    let readme = read(&repo_path(readme_rel));
    let quoted = quoted_replies(&readme);
    assert!(!quoted.is_empty(), "{readme_rel} quotes no reply");
    for name in live.keys() {
        assert!(quoted.contains_key(name), "{readme_rel} lacks reply {name}");
    }
    for (name, q) in &quoted {
        let r = live
            .get(name)
            .unwrap_or_else(|| panic!("{readme_rel}: no scenario produces reply {name}"));
        let show = || format!("{readme_rel} reply {name}; live reply:\n{}", render(r));
        assert_eq!(q.status, r.status, "{}", show());
        // `connection: close` is there because this client asks for it (curl does not).
        let mut live_names: Vec<&str> = r
            .headers
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "connection")
            .collect();
        let mut quoted_names: Vec<&str> = q.headers.iter().map(|(k, _)| k.as_str()).collect();
        live_names.sort();
        quoted_names.sort();
        assert_eq!(quoted_names, live_names, "{}", show());
        for (k, v) in &q.headers {
            let lv = r.header(k).unwrap_or("");
            match k.as_str() {
                "date" => {}
                "retry-after" => {
                    let (a, b): (u64, u64) = (v.parse().unwrap(), lv.parse().unwrap());
                    assert!(a > 0 && b > 0, "{}", show());
                }
                // Time left in the window: depends on when the request came.
                _ if k.starts_with("x-ratelimit-reset-") || k == "x-budget-reset" => {
                    assert!(!v.is_empty() && lv.ends_with('s'), "header {k}; {}", show());
                }
                // Carries a timestamp-free length only when the message has the same
                // length, which masking keeps (RFC 3339 times are fixed width).
                _ => assert_eq!(v, lv, "header {k}; {}", show()),
            }
        }
        let body = r.json().unwrap_or_else(|| panic!("not JSON; {}", show()));
        for field in ["type", "code", "param"] {
            let pointer = format!("/error/{field}");
            assert_eq!(
                q.body.pointer(&pointer),
                body.pointer(&pointer),
                "{}",
                show()
            );
        }
        let (qm, lm) = (
            q.body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or(""),
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        assert_eq!(mask_times(qm), mask_times(lm), "{}", show());
    }
}

/// The names of the replies a document quotes.
pub fn quoted_names(readme_rel: &str) -> Vec<String> {
    quoted_replies(&read(&repo_path(readme_rel)))
        .into_keys()
        .collect()
}
