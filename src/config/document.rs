//! The configuration text, read without building one tree of the whole document: a
//! `serde_json::Value` costs about eight times its JSON in memory, and with 10,000 keys that
//! tree, not the policy, was most of what a worker VM ever held.
//!
//! The top level is read into the small fields ([`WireConfig`], through a `Value` as
//! before) and the places of the owners' entries (`customers`, `teams`, `virtual_keys`) in
//! the text. [`Entries::decode`] turns one entry, alone, into its wire type for the
//! compiler, reading it from the text or, once the text is gone, from the host again (see
//! [`Text`]). Each entry goes through the same steps the whole document used to: a `Value`,
//! the object checks of `shape`, serde with the JSON path of the first problem.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::problems::Problems;
use super::wire::WireConfig;
use super::{shape, ConfigError};

type Result<T> = std::result::Result<T, ConfigError>;

/// The owner lists, in the order of [`Document`]'s fields.
const OWNER_LISTS: [&str; 3] = ["customers", "teams", "virtual_keys"];

/// The parsed configuration: its small fields, and where its owners' entries are.
pub struct Document {
    pub wire: WireConfig,
    pub customers: Entries,
    pub teams: Entries,
    pub virtual_keys: Entries,
}

/// The entries of one owner list, as byte ranges of the configuration text.
pub struct Entries {
    field: &'static str,
    ranges: Vec<Range<usize>>,
}

/// Where entries are read from: the configuration text itself, or the host, which can hand
/// over any range of it again (`read(start, len)`), so the text need not stay in memory.
pub enum Text<'a> {
    InMemory(&'a str),
    Host(&'a dyn Fn(usize, usize) -> Option<Vec<u8>>),
}

impl Text<'_> {
    fn get(&self, range: Range<usize>) -> Result<Cow<'_, str>> {
        let unreadable = || {
            ConfigError::new(
                "",
                "the configuration could not be read again from the host",
            )
        };
        match self {
            Text::InMemory(text) => text.get(range).map(Cow::Borrowed).ok_or_else(unreadable),
            Text::Host(read) => {
                let len = range.len();
                let bytes = read(range.start, len).filter(|bytes| bytes.len() == len);
                let text = bytes.and_then(|bytes| String::from_utf8(bytes).ok());
                text.map(Cow::Owned).ok_or_else(unreadable)
            }
        }
    }
}

impl Document {
    /// The structure of `text`. Only a text that is not JSON, or not an object, is an error
    /// here when `problems` collects: the small fields' problems go there.
    pub fn parse<const C: bool>(text: &str, problems: &mut Problems<C>) -> Result<Self> {
        // First the whole text through serde_json's parser, keeping nothing, so that a
        // broken document is refused with the message (and position) it always had.
        serde_json::from_str::<Checked>(text).map_err(|err| {
            ConfigError::new("", format!("configuration is not valid JSON: {err}"))
        })?;
        // Valid JSON that is not read as a map is not an object. Duplicate fields: the last
        // one counts, as in a `Value`.
        let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text)
            .map_err(|_| ConfigError::new("", "the configuration must be a JSON object"))?;
        let mut rest = serde_json::Map::new();
        let mut lists: [Entries; 3] = OWNER_LISTS.map(|field| Entries {
            field,
            ranges: Vec::new(),
        });
        for (name, raw) in fields {
            let list = lists
                .iter_mut()
                .find(|list| list.field == name && raw.get().starts_with('['));
            if let Some(list) = list {
                let items: Vec<&RawValue> =
                    serde_json::from_str(raw.get()).map_err(invalid_json)?;
                list.ranges = Vec::with_capacity(items.len());
                for item in items {
                    let range = range_in(text, item.get())
                        .ok_or_else(|| invalid_json_text("an entry outside the text"))?;
                    list.ranges.push(range);
                }
            } else {
                // Anything else, wrong-typed owner lists included, is read as before.
                rest.insert(name, serde_json::from_str(raw.get()).map_err(invalid_json)?);
            }
        }
        let wire = read_small_fields(rest, problems)?;
        let [customers, teams, virtual_keys] = lists;
        Ok(Self {
            wire,
            customers,
            teams,
            virtual_keys,
        })
    }
}

/// The small fields as their wire type. When `problems` collects, a field with a problem is
/// left out (its default stands) and the rest read again, so every field's problem is found.
fn read_small_fields<const C: bool>(
    mut rest: serde_json::Map<String, Value>,
    problems: &mut Problems<C>,
) -> Result<WireConfig> {
    if !problems.collecting() {
        return small_fields(rest);
    }
    loop {
        let problem = match small_fields(rest.clone()) {
            Ok(wire) => return Ok(wire),
            Err(problem) => problem,
        };
        let field = leading_field(&problem.path).to_string();
        problems.note(problem)?;
        if rest.remove(&field).is_none() {
            // No field to blame: only the defaults are left (an empty object always reads).
            if rest.is_empty() {
                return small_fields(rest);
            }
            rest.clear();
        }
    }
}

fn small_fields(rest: serde_json::Map<String, Value>) -> Result<WireConfig> {
    let rest = Value::Object(rest);
    shape::require_objects(&rest)?;
    serde_path_to_error::deserialize(rest).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, err.into_inner().to_string())
    })
}

/// The top-level field a JSON path starts in (`pricing` for `pricing["gpt-4o"].x`).
fn leading_field(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

impl Entries {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The `id` of entry `index` when it is a string, however wrong the rest of the entry
    /// is: references to an owner whose entry has a problem are then not problems too.
    pub fn id(&self, index: usize, text: &Text<'_>) -> Option<String> {
        let range = self.ranges.get(index)?;
        let entry = text.get(range.clone()).ok()?;
        let value: Value = serde_json::from_str(&entry).ok()?;
        value.get("id")?.as_str().map(str::to_string)
    }

    /// Entry `index`, read from `text`, as its wire type, checked as the whole document used
    /// to be; errors name the path from the document's root (`virtual_keys[3].budgets[0]`).
    pub fn decode<T: DeserializeOwned>(&self, index: usize, text: &Text<'_>) -> Result<T> {
        let (path, value) = self.value(index, text)?;
        serde_path_to_error::deserialize(value).map_err(|err| {
            let inner = err.path().to_string();
            path_error(path, &inner, &err.into_inner())
        })
    }

    /// Entry `index` as a checked `Value`, and its path (the part of [`Entries::decode`]
    /// that does not depend on the wire type, kept out of its copies).
    fn value(&self, index: usize, text: &Text<'_>) -> Result<(String, Value)> {
        let path = format!("{}[{index}]", self.field);
        let range = self
            .ranges
            .get(index)
            .ok_or_else(|| ConfigError::new(path.as_str(), "no such entry"))?;
        let entry = text.get(range.clone())?;
        let value: Value = serde_json::from_str(&entry).map_err(invalid_json)?;
        drop(entry);
        shape::require_owner_objects(&value, &path)?;
        Ok((path, value))
    }
}

/// A serde error at `inner` (serde_path_to_error's path inside the entry at `path`).
fn path_error(path: String, inner: &str, err: &serde_json::Error) -> ConfigError {
    let full = match inner {
        "." => path,
        _ if inner.starts_with('[') => format!("{path}{inner}"),
        _ => format!("{path}.{inner}"),
    };
    ConfigError::new(full, err.to_string())
}

/// Where `part` (a slice of `text`) lies in it.
fn range_in(text: &str, part: &str) -> Option<Range<usize>> {
    let start = part.as_ptr().addr().checked_sub(text.as_ptr().addr())?;
    let range = start..start.checked_add(part.len())?;
    (text.get(range.clone()) == Some(part)).then_some(range)
}

/// Only reached if a slice of an already checked document failed to parse again.
fn invalid_json(err: serde_json::Error) -> ConfigError {
    invalid_json_text(err)
}

fn invalid_json_text(err: impl fmt::Display) -> ConfigError {
    ConfigError::new("", format!("configuration is not valid JSON: {err}"))
}

/// Any JSON value, read completely (numbers converted, strings unescaped, nesting counted)
/// and kept nowhere: the checks of parsing into a `Value`, without the tree.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> std::result::Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Checked, A::Error> {
        while map.next_entry::<IgnoredAny, Checked>()?.is_some() {}
        Ok(Checked)
    }
}
