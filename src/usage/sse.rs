//! Server-sent-event framing: splits the stream into lines and events and streams each
//! event's `data` into the JSON scanner, without buffering lines or events. It is fed only
//! the events that `events.rs` cannot rule out (see [`SseFramer::skipped_event`]).
//!
//! Per the event-stream format: lines end in CRLF, LF or CR; a blank line ends an event;
//! a line is `field:value` (one optional space after the colon), a lone `field`, or a
//! `:comment`; the `data` lines of one event are joined with "\n"; one leading UTF-8 BOM
//! is dropped. Only `data` matters here: `event`, `id`, `retry` and comments are skipped,
//! because the usage paths alone tell the providers' events apart.

use super::bytes::find_either;
use super::extract::Collected;
use super::json::JsonScanner;

const BOM: &[u8] = b"\xEF\xBB\xBF";
const DATA: &[u8] = b"data";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Start of stream: this many bytes of a BOM seen.
    Bom(u8),
    /// Start of a line.
    Start,
    /// In the field name, `len` bytes in; `data` while those bytes are a prefix of "data".
    Name { len: u8, data: bool },
    /// Just after `data:`; an optional space follows.
    DataColon,
    /// In a data value: streamed to the JSON scanner.
    Data,
    /// In any other line: skipped.
    Ignored,
}

/// Line and event framing state for one event stream.
#[derive(Debug, Clone)]
pub(crate) struct SseFramer {
    line: Line,
    /// The previous byte was a CR, so an LF now belongs to the same line ending.
    after_cr: bool,
    /// A data line was already seen in this event (the next one is joined with "\n").
    has_data: bool,
}

impl SseFramer {
    pub(crate) fn new() -> Self {
        Self {
            line: Line::Bom(0),
            after_cr: false,
            has_data: false,
        }
    }

    /// Scans the next chunk of the stream.
    pub(crate) fn feed(&mut self, mut rest: &[u8], json: &mut JsonScanner, out: &mut Collected) {
        while let Some((&b, tail)) = rest.split_first() {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    rest = tail;
                    continue;
                }
            }
            match self.line {
                line @ (Line::Data | Line::Ignored) => {
                    let at = find_either(rest, b'\n', b'\r').unwrap_or(rest.len());
                    let (value, from) = rest.split_at_checked(at).unwrap_or((rest, &[]));
                    if line == Line::Data {
                        json.feed(value, out);
                    }
                    let Some((&eol, after)) = from.split_first() else {
                        return;
                    };
                    rest = after;
                    self.end_line(eol);
                }
                Line::Bom(seen) => {
                    let expected = BOM.get(usize::from(seen)).copied();
                    if expected == Some(b) {
                        rest = tail;
                        let seen = seen.saturating_add(1);
                        self.line = if usize::from(seen) == BOM.len() {
                            Line::Start
                        } else {
                            Line::Bom(seen)
                        };
                    } else if seen == 0 {
                        self.line = Line::Start;
                    } else {
                        // A partial BOM is part of a field name that cannot be "data".
                        self.line = Line::Name {
                            len: seen,
                            data: false,
                        };
                    }
                }
                Line::Start => {
                    // Fast paths for whole `data: ` and `event:` prefixes, the lines nearly
                    // every event is made of; a prefix split across chunks takes `Name`.
                    let (data, event) = (b"data: ", b"event:");
                    if b == b'\n' || b == b'\r' {
                        // Blank line: the event is over.
                        json.reset();
                        self.has_data = false;
                        rest = tail;
                        self.end_line(b);
                    } else if b == b'd' && rest.starts_with(data) {
                        rest = rest.get(data.len()..).unwrap_or_default();
                        self.start_data(json, out);
                        self.line = Line::Data;
                    } else if b == b'e' && rest.starts_with(event) {
                        rest = rest.get(event.len()..).unwrap_or_default();
                        self.line = Line::Ignored;
                    } else {
                        self.line = Line::Name { len: 0, data: true };
                    }
                }
                Line::Name { len, data } => {
                    rest = tail;
                    let is_data = data && usize::from(len) == DATA.len();
                    match b {
                        b':' if is_data => {
                            self.start_data(json, out);
                            self.line = Line::DataColon;
                        }
                        b':' => self.line = Line::Ignored,
                        b'\n' | b'\r' => {
                            // A lone `data` field is a data line with an empty value.
                            if is_data {
                                self.start_data(json, out);
                            }
                            self.end_line(b);
                        }
                        _ => {
                            self.line = Line::Name {
                                len: len.saturating_add(1),
                                data: data && DATA.get(usize::from(len)) == Some(&b),
                            };
                        }
                    }
                }
                Line::DataColon => {
                    if b == b' ' {
                        rest = tail;
                    }
                    self.line = Line::Data;
                }
            }
        }
    }

    /// Moves past an event that was not fed (its bytes cannot change what is found): the
    /// state is what feeding it would have left, since it ended with a blank line; `cr`
    /// says that blank line ended in a CR (an LF next belongs to it).
    pub(crate) fn skipped_event(&mut self, cr: bool) {
        self.line = Line::Start;
        self.after_cr = cr;
        self.has_data = false;
    }

    fn start_data(&mut self, json: &mut JsonScanner, out: &mut Collected) {
        if self.has_data {
            json.feed(b"\n", out);
        }
        self.has_data = true;
    }

    fn end_line(&mut self, eol: u8) {
        self.after_cr = eol == b'\r';
        self.line = Line::Start;
    }
}
