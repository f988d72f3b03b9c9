//! Incremental JSON tokenizer that follows the path and reports values at tracked paths.
//!
//! Two regimes keep it cheap and bounded:
//! - Tracked objects (the root, and objects [`child`] says matter, at most
//!   [`MAX_TRACKED`] deep) are parsed strictly: keys are decoded and looked up, values
//!   are checked, and any syntax error stops the document ([`State::Error`]).
//! - Any other value is skipped: a skipped string or container is crossed 32 bytes at a
//!   time on bit masks of its quotes, backslashes and brackets (`skip.rs`), with a
//!   saturating depth counter, so nesting costs no memory and long model text little.
//!
//! Values are committed as soon as they are complete (a number at its first following
//! byte, a string at its closing quote), so a body cut short keeps what it had shown.

use super::bytes::{find_either, is_space, space_run};
use super::extract::{child, Collected, Node, Target};
use super::skip::Crossing;
use super::text::{Capture, KEY_MAX_BYTES, MODEL_MAX_BYTES};

/// Deepest tracked object: root > `response` > `usage` > `input_tokens_details`.
const MAX_TRACKED: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the document: an object, or an array of objects (Gemini's
    /// `streamGenerateContent` without `alt=sse`), each element then read like a document.
    Start,
    /// After `[` of a top-level array: an object or `]`.
    ArrayFirst,
    /// After `,` in a top-level array: an object.
    ArrayElement,
    /// After an element of a top-level array: `,` or `]`.
    ArrayNext,
    /// Just after `{` of a tracked object: a key or `}`.
    KeyOrEnd,
    /// After `,` in a tracked object: a key.
    Key,
    /// Inside a key or model string being decoded (into `key` or `model`).
    Capture,
    /// After `\` in a captured string.
    CaptureEscape,
    /// Reading the hex digits of a `\u` escape (count read so far).
    CaptureHex(u8),
    /// After a key: `:`.
    Colon,
    /// A value in a tracked object.
    Value,
    /// After a value in a tracked object: `,` or `}`.
    AfterValue,
    /// Inside a number at a tracked level.
    Number,
    /// Inside `true` / `false` / `null`; `literal` holds the bytes still expected.
    Literal,
    /// Inside a skipped value (`crossing` says where); then `AfterValue`.
    Skip,
    /// The document is complete; the rest is ignored.
    Done,
    /// The document is not valid JSON on a tracked path; the rest is ignored.
    Error,
}

/// A number being read; only plain integers that fit a `u64` are usable.
#[derive(Debug, Clone, Copy, Default)]
struct Number {
    value: u64,
    usable: bool,
}

impl Number {
    /// A number whose first byte is `first` (a digit or `-`).
    fn start(first: u8) -> Self {
        let digit = first.wrapping_sub(b'0');
        Self {
            value: u64::from(digit),
            // A minus sign: not a token count.
            usable: digit <= 9,
        }
    }

    // Called per digit of every counted number; a call costs more than it.
    #[inline(always)]
    fn push(&mut self, b: u8) {
        let digit = b.wrapping_sub(b'0');
        // Sign, fraction or exponent: not a token count. A usable number began with a
        // digit, so a value still 0 here is a leading zero (`01`), which JSON forbids.
        if digit > 9 || self.value == 0 {
            self.usable = false;
            return;
        }
        // Bound first instead of `checked_mul`, which wasm32 lowers to a 128-bit multiply.
        let next = if self.value <= u64::MAX / 10 {
            self.value.wrapping_mul(10).checked_add(u64::from(digit))
        } else {
            None
        };
        match next {
            Some(v) => self.value = v,
            None => self.usable = false,
        }
    }

    fn get(&self) -> Option<u64> {
        self.usable.then_some(self.value)
    }
}

fn is_number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// A string's bytes and what follows its closing quote, when `after_quote` (what follows
/// its opening quote) holds it whole and it has no escape: such a string is its own
/// decoded text and needs no copy.
#[inline(always)]
fn whole_string(after_quote: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = find_either(after_quote, b'"', b'\\')?;
    let (text, from) = after_quote.split_at_checked(at)?;
    match from.split_first()? {
        (b'"', after) => Some((text, after)),
        _ => None,
    }
}

/// A model string has ended: keeps it if it is usable (`name`), or notes that the last
/// model named is not one the filter can read.
fn after_model(name: Option<&[u8]>, out: &mut Collected) -> State {
    match name {
        Some(name) => out.set_model(name),
        None => out.set_model_unreadable(),
    }
    State::AfterValue
}

/// `rest` after the whitespace it starts with. The first two bytes are tested alone:
/// compact bodies have no whitespace, pretty-printed ones one space after each `:`, and a
/// vector search costs more than those tests.
#[inline(always)]
fn after_space(rest: &[u8]) -> &[u8] {
    match rest {
        [first, ..] if !is_space(*first) => rest,
        [_, second, ..] if !is_space(*second) => rest.get(1..).unwrap_or_default(),
        _ => rest.get(space_run(rest)..).unwrap_or_default(),
    }
}

/// Streaming scanner for one JSON document; [`JsonScanner::reset`] readies it for the next.
#[derive(Debug, Clone)]
pub(crate) struct JsonScanner {
    state: State,
    /// Whether the server-sent-event wrappers (`response`, `message`) are tracked.
    events: bool,
    stack: [Node; MAX_TRACKED],
    tracked: usize,
    /// The document is a top-level array whose elements are read as documents.
    in_array: bool,
    /// Where the skipped value being crossed stands.
    crossing: Crossing,
    /// What the value after the current key is.
    target: Target,
    /// The key being decoded when it is not whole in one chunk or has escapes.
    key: Capture<KEY_MAX_BYTES>,
    /// The model being decoded in the same case; allocated the first time it happens,
    /// since a model is nearly always read in place from the chunk (`whole_model`).
    model: Option<Box<Capture<MODEL_MAX_BYTES>>>,
    capturing_key: bool,
    hex: u16,
    number: Number,
    literal: &'static [u8],
}

impl JsonScanner {
    pub(crate) fn new(events: bool) -> Self {
        Self {
            state: State::Start,
            events,
            stack: [Node::Root; MAX_TRACKED],
            tracked: 0,
            in_array: false,
            crossing: Crossing::default(),
            target: Target::Skip,
            key: Capture::default(),
            model: None,
            capturing_key: false,
            hex: 0,
            number: Number::default(),
            literal: b"",
        }
    }

    /// Forgets the current document (end of a server-sent event).
    pub(crate) fn reset(&mut self) {
        self.state = State::Start;
        self.in_array = false;
        self.tracked = 0;
        self.crossing = Crossing::default();
        self.target = Target::Skip;
    }

    /// Scans the next piece of the document.
    // Lets the vector searches (bytes.rs) inline here.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    pub(crate) fn feed(&mut self, mut rest: &[u8], out: &mut Collected) {
        while let Some((&b, tail)) = rest.split_first() {
            match self.state {
                // The states that cross long runs search ahead instead of stepping.
                State::Skip => rest = self.skip(rest),
                State::Capture => {
                    let at = find_either(rest, b'"', b'\\').unwrap_or(rest.len());
                    let (run, from) = rest.split_at_checked(at).unwrap_or((rest, &[]));
                    self.push_bytes(run);
                    let Some((&special, after)) = from.split_first() else {
                        return;
                    };
                    rest = after;
                    if special == b'\\' {
                        self.state = State::CaptureEscape;
                    } else {
                        self.end_capture(out);
                    }
                }
                // Fast path: members whole in this chunk are read in place, one after the
                // other; a key that is not (split, or escaped) is captured byte by byte.
                State::KeyOrEnd | State::Key if b == b'"' => rest = self.members(tail, out),
                // The same for a model name, taken straight from the chunk.
                State::Value if b == b'"' && self.target == Target::Model => {
                    match self.whole_model(tail, out) {
                        Some(after) => rest = after,
                        None => {
                            self.step(b);
                            rest = tail;
                        }
                    }
                }
                State::Number => rest = self.number_run(rest, out),
                // The separators of a tracked object, with the whitespace a pretty-printed
                // body puts after them, without going round the loop once more for it.
                State::Colon if b == b':' => {
                    self.state = State::Value;
                    rest = after_space(tail);
                }
                State::AfterValue if b == b',' => {
                    self.state = State::Key;
                    rest = after_space(tail);
                }
                // Other runs of whitespace between tokens (pretty-printed bodies are full of
                // indentation) in one search instead of a dispatch per byte.
                State::Start
                | State::ArrayFirst
                | State::ArrayElement
                | State::ArrayNext
                | State::KeyOrEnd
                | State::Key
                | State::Colon
                | State::Value
                | State::AfterValue
                    if is_space(b) =>
                {
                    rest = after_space(rest);
                }
                State::Done | State::Error => return,
                // A model member whose value is not a string (a string took the arm above).
                State::Value if self.target == Target::Model => {
                    out.set_model_unreadable();
                    self.step(b);
                    rest = tail;
                }
                _ => {
                    self.step(b);
                    rest = tail;
                }
            }
        }
    }

    /// Crosses the skipped value, returning what follows it (empty if the chunk ran out
    /// first). Skipped bytes are most of a body, so this stays out of the general dispatch
    /// in `feed`.
    fn skip<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        match self.crossing.cross(rest) {
            Some(end) => {
                self.state = State::AfterValue;
                rest.get(end..).unwrap_or_default()
            }
            None => &[],
        }
    }

    /// One byte in a state that is not a search or a run.
    fn step(&mut self, b: u8) {
        match self.state {
            State::Start => match b {
                b'{' => self.open(Node::Root),
                b'[' => {
                    self.in_array = true;
                    self.state = State::ArrayFirst;
                }
                _ if is_space(b) => {}
                _ => self.state = State::Error,
            },
            State::ArrayFirst | State::ArrayElement => match b {
                b'{' => self.open(Node::Root),
                b']' if self.state == State::ArrayFirst => self.state = State::Done,
                _ if is_space(b) => {}
                _ => self.state = State::Error,
            },
            State::ArrayNext => match b {
                b',' => self.state = State::ArrayElement,
                b']' => self.state = State::Done,
                _ if is_space(b) => {}
                _ => self.state = State::Error,
            },
            State::KeyOrEnd | State::Key => match b {
                b'"' => {
                    self.key.clear();
                    self.capturing_key = true;
                    self.state = State::Capture;
                }
                b'}' if self.state == State::KeyOrEnd => self.close(),
                _ if is_space(b) => {}
                _ => self.state = State::Error,
            },
            State::CaptureEscape => {
                let unescaped = match b {
                    b'"' | b'\\' | b'/' => b,
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        self.hex = 0;
                        self.state = State::CaptureHex(0);
                        return;
                    }
                    _ => {
                        self.state = State::Error;
                        return;
                    }
                };
                self.push_bytes(&[unescaped]);
                self.state = State::Capture;
            }
            State::CaptureHex(read) => {
                let Some(digit) = char::from(b).to_digit(16) else {
                    self.state = State::Error;
                    return;
                };
                // Four hex digits fit a u16; the shift drops nothing that was set.
                let digit = u16::try_from(digit).unwrap_or(0);
                self.hex = self.hex.wrapping_shl(4) | digit;
                if read >= 3 {
                    self.push_unit(self.hex);
                    self.state = State::Capture;
                } else {
                    self.state = State::CaptureHex(read.saturating_add(1));
                }
            }
            State::Colon => match b {
                b':' => self.state = State::Value,
                _ if is_space(b) => {}
                _ => self.state = State::Error,
            },
            State::Value => self.value(b),
            State::AfterValue => match b {
                b',' => self.state = State::Key,
                b'}' => self.close(),
                _ if is_space(b) => {}
                _ => self.state = State::Error,
            },
            State::Literal => match self.literal.split_first() {
                Some((&want, more)) if want == b => {
                    self.literal = more;
                    if more.is_empty() {
                        self.state = State::AfterValue;
                    }
                }
                _ => self.state = State::Error,
            },
            // Handled by `feed` and `skip`.
            State::Capture | State::Skip | State::Number | State::Done | State::Error => {}
        }
    }

    /// The first byte of a value in a tracked object.
    fn value(&mut self, b: u8) {
        match (b, self.target) {
            (b'{', Target::Object(node)) => self.open(node),
            (b'{' | b'[', _) => self.skip_value(Crossing::container()),
            (b'"', Target::Model) => {
                self.model.get_or_insert_with(Box::default).clear();
                self.capturing_key = false;
                self.state = State::Capture;
            }
            (b'"', _) => self.skip_value(Crossing::string()),
            (b'-' | b'0'..=b'9', _) => {
                self.number = Number::start(b);
                self.state = State::Number;
            }
            (b't', _) => self.literal(b"rue"),
            (b'f', _) => self.literal(b"alse"),
            (b'n', _) => self.literal(b"ull"),
            _ if is_space(b) => {}
            _ => self.state = State::Error,
        }
    }

    fn skip_value(&mut self, crossing: Crossing) {
        self.crossing = crossing;
        self.state = State::Skip;
    }

    fn literal(&mut self, rest: &'static [u8]) {
        self.literal = rest;
        self.state = State::Literal;
    }

    fn open(&mut self, node: Node) {
        match self.stack.get_mut(self.tracked) {
            Some(slot) => {
                *slot = node;
                self.tracked = self.tracked.saturating_add(1);
                self.state = State::KeyOrEnd;
            }
            // Cannot happen with the paths in `child`, but stays bounded if it did.
            None => self.skip_value(Crossing::container()),
        }
    }

    fn close(&mut self) {
        self.tracked = self.tracked.saturating_sub(1);
        self.state = if self.tracked > 0 {
            State::AfterValue
        } else if self.in_array {
            State::ArrayNext
        } else {
            State::Done
        };
    }

    /// What the value of `key` in the innermost tracked object is.
    fn lookup(&self, key: Option<&[u8]>) -> Target {
        let node = self
            .tracked
            .checked_sub(1)
            .and_then(|top| self.stack.get(top))
            .copied();
        match (node, key) {
            (Some(node), Some(key)) => child(node, key, self.events),
            _ => Target::Skip,
        }
    }

    /// Reads the members of tracked objects straight from the chunk while each one is
    /// whole in it: key, colon, value, and the comma or closing braces after it, without a
    /// round of `feed` per token. `after_quote` follows a key's opening quote. Returns what
    /// follows the last member read, with the state set for `feed` to go on, at the first
    /// thing read another way: a key split by the chunk's end or escaped (captured byte by
    /// byte), a value cut by the chunk's end, a literal or number not whole in it, anything
    /// that is not JSON.
    fn members<'a>(&mut self, mut after_quote: &'a [u8], out: &mut Collected) -> &'a [u8] {
        let Some((mut key, mut after)) = whole_string(after_quote) else {
            self.step(b'"');
            return after_quote;
        };
        loop {
            self.target = self.lookup(Some(key));
            // The colon nearly always follows at once.
            let value = match after.split_first() {
                Some((b':', value)) => after_space(value),
                _ => {
                    self.state = State::Colon;
                    return after;
                }
            };
            self.state = State::Value;
            let Some(after_value) = self.value_in_place(value, out) else {
                return value;
            };
            if self.state != State::AfterValue {
                // A tracked object opened (or a container is being skipped to the end of the
                // chunk): its first key, if it is there.
                let next = after_value;
                match next.split_first() {
                    Some((b'"', tail)) if self.state == State::KeyOrEnd => {
                        after_quote = tail;
                        match whole_string(after_quote) {
                            Some(found) => (key, after) = found,
                            None => return next,
                        }
                        continue;
                    }
                    _ => return next,
                }
            }
            // The separators after the value: closing braces end objects, a comma and
            // a whole key go on.
            let mut next = after_space(after_value);
            loop {
                match next.split_first() {
                    Some((b',', tail)) => {
                        self.state = State::Key;
                        let key_start = after_space(tail);
                        match key_start.split_first() {
                            Some((b'"', tail)) => match whole_string(tail) {
                                Some(found) => {
                                    (key, after) = found;
                                    break;
                                }
                                None => return key_start,
                            },
                            _ => return key_start,
                        }
                    }
                    Some((b'}', tail)) => {
                        self.close();
                        if self.state != State::AfterValue {
                            return tail;
                        }
                        next = after_space(tail);
                    }
                    _ => return next,
                }
            }
        }
    }

    /// A value of a tracked object that is whole in `value` (which starts with its first
    /// byte): reads it and returns what follows, with the state after it (`AfterValue`, or
    /// `KeyOrEnd` inside a tracked object it opened, or `Skip` when a skipped container
    /// runs past the chunk). `None`, with the state left at `Value`, for anything else.
    #[inline(always)]
    fn value_in_place<'a>(&mut self, value: &'a [u8], out: &mut Collected) -> Option<&'a [u8]> {
        let (&first, tail) = value.split_first()?;
        let after = match (first, self.target) {
            (b'"', Target::Model) => return self.whole_model(tail, out),
            // A model that is not a string is judged in `feed`.
            (_, Target::Model) => return None,
            (b'{', Target::Object(node)) => {
                self.open(node);
                return Some(after_space(tail));
            }
            (b'"' | b'{' | b'[', _) => {
                self.crossing = if first == b'"' {
                    Crossing::string()
                } else {
                    Crossing::container()
                };
                match self.crossing.cross(tail) {
                    Some(end) => tail.get(end..)?,
                    None => {
                        self.state = State::Skip;
                        return Some(&[]);
                    }
                }
            }
            (b'0'..=b'9' | b'-', _) => {
                let end = tail.iter().position(|&b| !is_number_byte(b))?;
                let (digits, after) = tail.split_at_checked(end)?;
                if let Target::Count(field) = self.target {
                    let mut number = Number::start(first);
                    for &digit in digits {
                        number.push(digit);
                    }
                    if let Some(n) = number.get() {
                        out.set_count(field, n);
                    }
                }
                after
            }
            (b'n', _) => tail.strip_prefix(b"ull")?,
            (b't', _) => tail.strip_prefix(b"rue")?,
            (b'f', _) => tail.strip_prefix(b"alse")?,
            _ => return None,
        };
        self.state = State::AfterValue;
        Some(after)
    }

    /// Continues a number through as many of its bytes as `rest` holds, committing it at
    /// the first byte after it; returns the bytes from that one on.
    fn number_run<'a>(&mut self, mut rest: &'a [u8], out: &mut Collected) -> &'a [u8] {
        if !matches!(self.target, Target::Count(_)) {
            // Not counted: only its end matters.
            let Some(end) = rest.iter().position(|&b| !is_number_byte(b)) else {
                return &[];
            };
            self.state = State::AfterValue;
            return rest.get(end..).unwrap_or_default();
        }
        while let Some((&b, tail)) = rest.split_first() {
            if !is_number_byte(b) {
                if let (Target::Count(field), Some(n)) = (self.target, self.number.get()) {
                    out.set_count(field, n);
                }
                self.state = State::AfterValue;
                return rest;
            }
            self.number.push(b);
            rest = tail;
        }
        rest
    }

    fn end_capture(&mut self, out: &mut Collected) {
        if self.capturing_key {
            self.target = self.lookup(self.key.finish());
            self.state = State::Colon;
        } else {
            let name = self.model.as_deref().and_then(Capture::finish);
            self.state = after_model(name, out);
        }
    }

    /// `after_quote` follows a model's opening quote. If the string ends in it without an
    /// escape, takes it in place and returns what follows the closing quote.
    fn whole_model<'a>(&mut self, after_quote: &'a [u8], out: &mut Collected) -> Option<&'a [u8]> {
        let (name, after) = whole_string(after_quote)?;
        let usable = name.len() <= MODEL_MAX_BYTES;
        self.state = after_model(usable.then_some(name), out);
        Some(after)
    }

    /// Appends decoded bytes to the string being captured.
    fn push_bytes(&mut self, run: &[u8]) {
        if self.capturing_key {
            self.key.push_bytes(run);
        } else if let Some(model) = self.model.as_deref_mut() {
            model.push_bytes(run);
        }
    }

    /// Appends a `\uXXXX` code unit to the string being captured.
    fn push_unit(&mut self, unit: u16) {
        if self.capturing_key {
            self.key.push_unit(unit);
        } else if let Some(model) = self.model.as_deref_mut() {
            model.push_unit(unit);
        }
    }
}
