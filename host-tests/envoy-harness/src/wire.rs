//! HTTP/1.1 framing shared by the mock upstream and the test client: a buffered reader that
//! remembers when bytes arrived, head parsing, and body reading (content-length, chunked,
//! until-close). Every read is bounded by the socket's timeout and by size limits.

use std::io::{self, Read, Write};
use std::time::Instant;

/// Largest request or response head accepted (request line / status line plus headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest single line inside a chunked body (chunk-size line, trailer).
const MAX_LINE: usize = 8 * 1024;
const BUF_SIZE: usize = 64 * 1024;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    ContentLength(usize),
    Chunked,
    /// Until the peer closes (responses without length or chunking).
    UntilClose,
}

/// A parsed head: the first line split on spaces, and headers with lower-case names.
#[derive(Debug, Clone)]
pub struct Head {
    pub first_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The framing of the body that follows, per RFC 9112 (chunked wins over length).
    pub fn framing(&self, is_response: bool) -> io::Result<Framing> {
        if let Some(te) = self.header("transfer-encoding") {
            if te.to_ascii_lowercase().contains("chunked") {
                return Ok(Framing::Chunked);
            }
        }
        if let Some(cl) = self.header("content-length") {
            let n = cl
                .trim()
                .parse::<usize>()
                .map_err(|_| invalid(format!("bad content-length {cl:?}")))?;
            return Ok(if n == 0 {
                Framing::Empty
            } else {
                Framing::ContentLength(n)
            });
        }
        Ok(if is_response {
            Framing::UntilClose
        } else {
            Framing::Empty
        })
    }
}

/// First value of `name` in a header list, case-insensitively.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A buffered reader that records the instant of the read that brought in the bytes being
/// consumed, so a caller can tell when the first body byte reached it.
pub struct WireReader<R: Read> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    last_fill: Instant,
}

impl<R: Read> WireReader<R> {
    pub fn new(inner: R) -> Self {
        WireReader {
            inner,
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            last_fill: Instant::now(),
        }
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// Reads more bytes into the buffer; returns how many (0 at end of stream).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let spare = self.buf.get_mut(self.end..).unwrap_or(&mut []);
        let n = loop {
            match self.inner.read(spare) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        self.last_fill = Instant::now();
        Ok(n)
    }

    /// Reads a head up to the blank line. `Ok(None)`: the peer closed before sending a byte.
    pub fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(pos) = find(self.buffered(), b"\r\n\r\n") {
                let raw = self.buffered().get(..pos).unwrap_or(&[]).to_vec();
                self.start += pos + 4;
                return parse_head(&raw).map(Some);
            }
            if self.end - self.start > MAX_HEAD {
                return Err(invalid("head too large"));
            }
            if self.fill()? == 0 {
                if self.start == self.end {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a head",
                ));
            }
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = find(self.buffered(), b"\r\n") {
                let line =
                    String::from_utf8_lossy(self.buffered().get(..pos).unwrap_or(&[])).into_owned();
                self.start += pos + 2;
                return Ok(line);
            }
            if self.end - self.start > MAX_LINE {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a line",
                ));
            }
        }
    }

    /// Passes up to `n` body bytes to `sink` (with the instant they arrived); `n = None`
    /// reads to end of stream. Fails on early end of stream when `n` is given.
    fn pump(&mut self, n: Option<usize>, sink: &mut dyn FnMut(&[u8], Instant)) -> io::Result<()> {
        let mut left = n;
        loop {
            if left == Some(0) {
                return Ok(());
            }
            if self.start == self.end && self.fill()? == 0 {
                return match left {
                    None => Ok(()),
                    Some(_) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a body",
                    )),
                };
            }
            let avail = self.end - self.start;
            let take = left.map_or(avail, |l| l.min(avail));
            let at = self.last_fill;
            sink(self.buffered().get(..take).unwrap_or(&[]), at);
            self.start += take;
            left = left.map(|l| l - take);
        }
    }

    /// Reads a whole body with the given framing, at most `max` bytes, handing each piece
    /// to `sink` as it arrives.
    pub fn read_body(
        &mut self,
        framing: Framing,
        max: usize,
        sink: &mut dyn FnMut(&[u8], Instant),
    ) -> io::Result<()> {
        let mut total = 0usize;
        let mut guarded = |data: &[u8], at: Instant| {
            total = total.saturating_add(data.len());
            if total <= max {
                sink(data, at);
            }
        };
        match framing {
            Framing::Empty => Ok(()),
            Framing::ContentLength(n) => {
                if n > max {
                    return Err(invalid(format!("body of {n} bytes exceeds {max}")));
                }
                self.pump(Some(n), &mut guarded)
            }
            Framing::UntilClose => self.pump(None, &mut guarded),
            Framing::Chunked => {
                // Bounded by `max`: every chunk adds its size to the total.
                let mut seen = 0usize;
                loop {
                    let line = self.read_line()?;
                    let size_hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_hex, 16)
                        .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                    if size == 0 {
                        // Trailers, then the blank line (bounded by the line limit and by
                        // the head limit on the count of lines).
                        for _ in 0..MAX_HEAD / 2 {
                            if self.read_line()?.is_empty() {
                                return Ok(());
                            }
                        }
                        return Err(invalid("too many trailers"));
                    }
                    seen = seen.saturating_add(size);
                    if seen > max {
                        return Err(invalid(format!("chunked body exceeds {max} bytes")));
                    }
                    self.pump(Some(size), &mut guarded)?;
                    if !self.read_line()?.is_empty() {
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let first_line = lines.next().unwrap_or("").to_string();
    if first_line.is_empty() {
        return Err(invalid("empty first line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Head {
        first_line,
        headers,
    })
}

/// Writes one chunk of a chunked body (nothing for an empty slice: that would end the body).
pub fn write_chunk(w: &mut dyn Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

/// Writes the last chunk of a chunked body.
pub fn write_last_chunk(w: &mut dyn Write) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}
