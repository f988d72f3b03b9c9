//! Fitting the answer to the budget (docs/reservations.md, "Clamping the output"): with
//! `reservation.clamp_output`, a request whose estimate does not fit a token limit or
//! budget, but whose prompt does, goes upstream with its output cap lowered to what the
//! room left affords, instead of being refused.
//!
//! Two parts: how many output tokens the room affords ([`affordable_output`]), and the
//! held request body with its cap lowered ([`with_output_cap`]). The body is edited in
//! place like the stream-usage rewrite (`stream_usage.rs`): top-level members read with
//! serde_json as raw slices, the last of a name counting, every other byte kept.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::money::Money;
use crate::pricing::Price;
use crate::usage::Usage;

/// Where a request names its output cap, by the API its path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapField {
    /// OpenAI chat completions: `max_completion_tokens` (`max_tokens` too, if sent).
    ChatCompletions,
    /// Legacy completions and Anthropic Messages: `max_tokens`.
    MaxTokens,
    /// OpenAI Responses: `max_output_tokens`.
    Responses,
    /// Gemini `generateContent`: `generationConfig.maxOutputTokens`.
    Gemini,
}

/// The top-level cap members, any of which is lowered when present.
const TOP_LEVEL: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

impl CapField {
    /// The API of a `POST` to `path` (query string ignored), when its cap can be lowered.
    pub fn of_path(path: &str) -> Option<Self> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
            Some(Self::Gemini)
        } else if path.ends_with("/chat/completions") {
            Some(Self::ChatCompletions)
        } else if path.ends_with("/completions") || path.ends_with("/messages") {
            Some(Self::MaxTokens)
        } else if path.ends_with("/responses") {
            Some(Self::Responses)
        } else {
            None
        }
    }

    /// The member added when the body names no cap.
    fn added_member(self) -> &'static str {
        match self {
            Self::ChatCompletions => "max_completion_tokens",
            Self::MaxTokens | Self::Gemini => "max_tokens",
            Self::Responses => "max_output_tokens",
        }
    }
}

/// The most output tokens (at most `wanted`) that keep `prompt` tokens plus the output
/// within a token limit's `room` (`tokens`) and a budget's room (`money`, priced by
/// `price`); `None` when not even one output token fits.
pub fn affordable_output(
    prompt: u64,
    wanted: u64,
    token_room: Option<u128>,
    money_room: Option<(Money, &Price)>,
) -> Option<u64> {
    let mut cap = wanted;
    if let Some(room) = token_room {
        let left = room.checked_sub(u128::from(prompt))?;
        cap = cap.min(u64::try_from(left).unwrap_or(u64::MAX));
    }
    if let Some((room, price)) = money_room {
        let cost = |output: u64| {
            price.cost(&Usage {
                input_uncached: prompt,
                output,
                ..Usage::default()
            })
        };
        if cost(cap) > room {
            // The largest output whose cost fits: cost grows with output (prices are not
            // negative), so a binary search over [0, cap] finds it.
            let (mut fits, mut over) = (0u64, cap);
            if cost(0) > room {
                return None;
            }
            while over.saturating_sub(fits) > 1 {
                let mid = fits.saturating_add(over.saturating_sub(fits) / 2);
                if cost(mid) <= room {
                    fits = mid;
                } else {
                    over = mid;
                }
            }
            cap = fits;
        }
    }
    (cap > 0).then_some(cap)
}

/// `body` with every output cap it names lowered to at most `cap` (the one `field` says
/// added when it names none); `None` when it is not a JSON object or nothing changes.
pub fn with_output_cap(body: &[u8], field: CapField, cap: u64) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let members: Members<'_> = serde_json::from_str(text).ok()?;
    let number = cap.to_string();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut named = false;
    for name in TOP_LEVEL {
        if let Some(value) = members.get(name) {
            named = true;
            if lowered(value, cap) {
                edits.push(replace(text, value, &number)?);
            }
        }
    }
    if field == CapField::Gemini {
        match members.get("generationConfig") {
            Some(config) if config.get().starts_with('{') => {
                let inner: Members<'_> = serde_json::from_str(config.get()).ok()?;
                match inner.get("maxOutputTokens") {
                    Some(value) => {
                        named = true;
                        if lowered(value, cap) {
                            edits.push(replace(text, value, &number)?);
                        }
                    }
                    None if !named => {
                        let open = span(text, config)?.0.checked_add(1)?;
                        let comma = if inner.is_empty() { "" } else { "," };
                        edits.push((open, 0, format!("\"maxOutputTokens\":{cap}{comma}")));
                        named = true;
                    }
                    None => {}
                }
            }
            Some(_) => return None,
            None if !named => {
                edits.push(before_close(
                    text,
                    &members,
                    &format!("\"generationConfig\":{{\"maxOutputTokens\":{cap}}}"),
                )?);
                named = true;
            }
            None => {}
        }
    }
    if !named {
        let member = format!("\"{}\":{cap}", field.added_member());
        edits.push(before_close(text, &members, &member)?);
    }
    apply(body, edits)
}

/// Whether a cap value must be replaced: a number above `cap`, or not a whole number (the
/// estimate then took the default, which was too much).
fn lowered(value: &RawValue, cap: u64) -> bool {
    value.get().parse::<u64>().map_or(true, |named| named > cap)
}

fn replace(text: &str, value: &RawValue, number: &str) -> Option<(usize, usize, String)> {
    let (at, len) = span(text, value)?;
    Some((at, len, number.to_string()))
}

/// An insertion of `member` before the object's closing brace.
fn before_close(text: &str, members: &Members<'_>, member: &str) -> Option<(usize, usize, String)> {
    let close = text.trim_end().len().checked_sub(1)?;
    let comma = if members.is_empty() { "" } else { "," };
    Some((close, 0, format!("{comma}{member}")))
}

fn span(text: &str, value: &RawValue) -> Option<(usize, usize)> {
    let inner = value.get();
    let start = (inner.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (text.get(start..end) == Some(inner)).then_some((start, inner.len()))
}

/// The body with the edits (non-overlapping spans) made; `None` when there are none.
fn apply(body: &[u8], mut edits: Vec<(usize, usize, String)>) -> Option<Vec<u8>> {
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(at, _, _)| *at);
    let added: usize = edits.iter().map(|(_, _, text)| text.len()).sum();
    let mut out = Vec::with_capacity(body.len().saturating_add(added));
    let mut from = 0usize;
    for (at, removed, text) in edits {
        out.extend_from_slice(body.get(from..at)?);
        out.extend_from_slice(text.as_bytes());
        from = at.checked_add(removed)?;
    }
    out.extend_from_slice(body.get(from..)?);
    Some(out)
}

type Members<'a> = BTreeMap<String, &'a RawValue>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Rates;

    fn clamped(body: &str, field: CapField, cap: u64) -> Option<String> {
        with_output_cap(body.as_bytes(), field, cap).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn every_cap_named_above_the_room_is_lowered_in_place() {
        assert_eq!(
            clamped(
                r#"{"model":"gpt-4o", "max_tokens": 4096 ,"messages":[]}"#,
                CapField::ChatCompletions,
                300
            )
            .as_deref(),
            Some(r#"{"model":"gpt-4o", "max_tokens": 300 ,"messages":[]}"#)
        );
        assert_eq!(
            clamped(
                r#"{"max_tokens":100,"max_completion_tokens":5000}"#,
                CapField::ChatCompletions,
                300
            )
            .as_deref(),
            Some(r#"{"max_tokens":100,"max_completion_tokens":300}"#),
            "a cap already below stays"
        );
        // The last of a name counts, as upstream.
        assert_eq!(
            clamped(
                r#"{"max_tokens":1,"max_tokens":900}"#,
                CapField::MaxTokens,
                50
            )
            .as_deref(),
            Some(r#"{"max_tokens":1,"max_tokens":50}"#)
        );
        assert_eq!(
            clamped(
                r#"{"contents":[],"generationConfig":{"temperature":1,"maxOutputTokens":8192}}"#,
                CapField::Gemini,
                77
            )
            .as_deref(),
            Some(r#"{"contents":[],"generationConfig":{"temperature":1,"maxOutputTokens":77}}"#)
        );
    }

    #[test]
    fn a_body_naming_no_cap_gets_its_api_s_member() {
        let cases = [
            (
                CapField::ChatCompletions,
                r#"{"model":"m"}"#,
                r#"{"model":"m","max_completion_tokens":9}"#,
            ),
            (CapField::MaxTokens, "{}\n", "{\"max_tokens\":9}\n"),
            (
                CapField::Responses,
                r#"{"input":"hi"}"#,
                r#"{"input":"hi","max_output_tokens":9}"#,
            ),
            (
                CapField::Gemini,
                r#"{"contents":[]}"#,
                r#"{"contents":[],"generationConfig":{"maxOutputTokens":9}}"#,
            ),
            (
                CapField::Gemini,
                r#"{"generationConfig":{"temperature":0}}"#,
                r#"{"generationConfig":{"maxOutputTokens":9,"temperature":0}}"#,
            ),
            (
                CapField::Gemini,
                r#"{"generationConfig":{}}"#,
                r#"{"generationConfig":{"maxOutputTokens":9}}"#,
            ),
        ];
        for (field, body, want) in cases {
            assert_eq!(clamped(body, field, 9).as_deref(), Some(want), "{body}");
            let parsed: serde_json::Value = serde_json::from_str(want).unwrap();
            assert!(parsed.is_object());
        }
    }

    #[test]
    fn what_is_not_an_object_or_already_fits_is_left_alone() {
        for body in ["[]", "{", r#"{"max_tokens":5}"#, "", r#"{"a":1} x"#] {
            assert_eq!(clamped(body, CapField::MaxTokens, 9), None, "{body}");
        }
    }

    #[test]
    fn the_paths_whose_cap_is_known() {
        assert_eq!(
            CapField::of_path("/v1/chat/completions"),
            Some(CapField::ChatCompletions)
        );
        assert_eq!(
            CapField::of_path("/v1/completions?x=1"),
            Some(CapField::MaxTokens)
        );
        assert_eq!(CapField::of_path("/v1/messages"), Some(CapField::MaxTokens));
        assert_eq!(
            CapField::of_path("/v1/responses"),
            Some(CapField::Responses)
        );
        assert_eq!(
            CapField::of_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            Some(CapField::Gemini)
        );
        assert_eq!(CapField::of_path("/v1/embeddings"), None);
        assert_eq!(CapField::of_path("/model/x/converse"), None);
    }

    #[test]
    fn the_room_affords_the_most_output_that_fits() {
        // Tokens: 1,000 left, 300 of prompt: 700 of output.
        assert_eq!(affordable_output(300, 4096, Some(1000), None), Some(700));
        assert_eq!(affordable_output(300, 500, Some(1000), None), Some(500));
        assert_eq!(
            affordable_output(1000, 4096, Some(1000), None),
            None,
            "no output left"
        );
        assert_eq!(affordable_output(1001, 4096, Some(1000), None), None);
        // Money: $1e-6 a prompt token, $2e-6 an output token, $0.001 left, 100 of prompt:
        // ($0.001 - $0.0001) / $2e-6 = 450 output tokens.
        let price = Price::flat(Rates {
            input: Money::from_usd(1e-6).unwrap(),
            output: Money::from_usd(2e-6).unwrap(),
            ..Rates::uniform(Money::ZERO)
        });
        let room = Money::from_usd(0.001).unwrap();
        assert_eq!(
            affordable_output(100, 4096, None, Some((room, &price))),
            Some(450)
        );
        assert_eq!(
            affordable_output(100, 4096, Some(400), Some((room, &price))),
            Some(300),
            "the tighter of the two"
        );
        assert_eq!(
            affordable_output(1000, 4096, None, Some((room, &price))),
            None
        );
    }
}
