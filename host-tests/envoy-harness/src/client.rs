//! A small blocking HTTP/1.1 client for tests, std only. One request per connection by
//! default ([`Client`]); [`Connection`] keeps one connection alive across requests.

use crate::wire::{find_header, Framing, WireReader};
use serde_json::Value;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response body the client reads.
pub const MAX_RESPONSE_BODY: usize = 256 * 1024 * 1024;

/// A request to send. Build with [`Request::get`] / [`Request::post`] and the `header` /
/// `body` / `json` builders.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body with `transfer-encoding: chunked` (in pieces of this size) instead of
    /// `content-length`.
    pub chunked: Option<usize>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: None,
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, value: &Value) -> Request {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(bytes)
    }

    /// Sends the body chunked, `piece` bytes per chunk (at least 1).
    pub fn chunked(mut self, piece: usize) -> Request {
        self.chunked = Some(piece.max(1));
        self
    }
}

/// A complete response with arrival times.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request started to be written.
    pub sent_at: Instant,
    /// When the response head was parsed.
    pub head_at: Instant,
    /// When the read that brought the first body byte returned (`None`: empty body).
    pub first_body_byte_at: Option<Instant>,
    /// When the whole body had been read.
    pub done_at: Instant,
    /// Each piece of body as it was read: (arrival instant, byte count). Useful to look at
    /// how a stream trickled in.
    pub arrivals: Vec<(Instant, usize)>,
}

impl Response {
    /// First value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `error.type` of an OpenAI-style error body, if any.
    pub fn error_type(&self) -> Option<String> {
        self.json()?
            .get("error")?
            .get("type")?
            .as_str()
            .map(str::to_string)
    }

    /// `error.message` of an OpenAI-style error body, if any.
    pub fn error_message(&self) -> Option<String> {
        self.json()?
            .get("error")?
            .get("message")?
            .as_str()
            .map(str::to_string)
    }

    /// The `data:` payloads of a server-sent-events body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.trim().to_string())
            .collect()
    }

    /// Time from sending to the first body byte.
    pub fn time_to_first_byte(&self) -> Option<Duration> {
        self.first_body_byte_at.map(|t| t - self.sent_at)
    }

    pub fn elapsed(&self) -> Duration {
        self.done_at - self.sent_at
    }
}

/// A client for one address: each `send` opens a fresh connection and closes it after.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
}

impl Client {
    /// A client with a 30 s timeout on connect and on every read or write.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn send(&self, req: &Request) -> io::Result<Response> {
        let mut conn = Connection::open(self.addr, self.timeout)?;
        conn.send_with(req, true)
    }

    pub fn get(&self, path: &str) -> io::Result<Response> {
        self.send(&Request::get(path))
    }

    pub fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> io::Result<Response> {
        let mut req = Request::post(path).json(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.send(&req)
    }

    /// Opens a keep-alive connection.
    pub fn connect(&self) -> io::Result<Connection> {
        Connection::open(self.addr, self.timeout)
    }
}

/// One kept-alive HTTP/1.1 connection.
pub struct Connection {
    writer: BufWriter<TcpStream>,
    reader: WireReader<TcpStream>,
    closed: bool,
}

impl Connection {
    pub fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            writer: BufWriter::new(stream.try_clone()?),
            reader: WireReader::new(stream),
            closed: false,
        })
    }

    /// Sends a request and reads the whole response, keeping the connection open.
    pub fn send(&mut self, req: &Request) -> io::Result<Response> {
        self.send_with(req, false)
    }

    /// True once the server said `connection: close` or the client asked for it.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn send_with(&mut self, req: &Request, close: bool) -> io::Result<Response> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection already closed",
            ));
        }
        let sent_at = Instant::now();
        let w = &mut self.writer;
        write!(w, "{} {} HTTP/1.1\r\n", req.method, req.path)?;
        let has = |name: &str| find_header(&req.headers, name).is_some();
        if !has("host") {
            w.write_all(b"host: localhost\r\n")?;
        }
        for (k, v) in &req.headers {
            write!(w, "{k}: {v}\r\n")?;
        }
        if close && !has("connection") {
            w.write_all(b"connection: close\r\n")?;
        }
        match req.chunked {
            Some(piece) => {
                w.write_all(b"transfer-encoding: chunked\r\n\r\n")?;
                for part in req.body.chunks(piece) {
                    crate::wire::write_chunk(w, part)?;
                }
                crate::wire::write_last_chunk(w)?;
            }
            None => {
                let has_body = !req.body.is_empty()
                    || !matches!(req.method.as_str(), "GET" | "HEAD" | "DELETE");
                if has_body && !has("content-length") {
                    write!(w, "content-length: {}\r\n", req.body.len())?;
                }
                w.write_all(b"\r\n")?;
                w.write_all(&req.body)?;
            }
        }
        w.flush()?;

        // Skip interim 1xx responses (bounded).
        let mut head = None;
        for _ in 0..8 {
            let h = self.reader.read_head()?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                )
            })?;
            let status = parse_status(&h.first_line)?;
            if !(100..200).contains(&status) {
                head = Some((h, status));
                break;
            }
        }
        let (head, status) =
            head.ok_or_else(|| crate::wire::invalid("too many interim responses"))?;
        let head_at = Instant::now();
        let framing = if req.method == "HEAD" || status == 204 || status == 304 {
            Framing::Empty
        } else {
            head.framing(true)?
        };
        let mut body = Vec::new();
        let mut arrivals: Vec<(Instant, usize)> = Vec::new();
        self.reader
            .read_body(framing, MAX_RESPONSE_BODY, &mut |data, at| {
                body.extend_from_slice(data);
                match arrivals.last_mut() {
                    Some(last) if last.0 == at => last.1 += data.len(),
                    _ => arrivals.push((at, data.len())),
                }
            })?;
        let done_at = Instant::now();
        if close
            || framing == Framing::UntilClose
            || head
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.closed = true;
        }
        Ok(Response {
            status,
            headers: head.headers,
            body,
            sent_at,
            head_at,
            first_body_byte_at: arrivals.first().map(|a| a.0),
            done_at,
            arrivals,
        })
    }
}

fn parse_status(line: &str) -> io::Result<u16> {
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(crate::wire::invalid(format!("bad status line {line:?}")));
    }
    parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| crate::wire::invalid(format!("bad status line {line:?}")))
}
