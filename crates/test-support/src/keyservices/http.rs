//! A small blocking HTTP/1.1 implementation on std sockets, enough for the key-service test servers: a client
//! ([`HttpConnection`] for keep-alive, [`request`] for one request), the server side of a test upstream
//! ([`read_request`], [`write_response`]), and the message framing the [`FaultProxy`](super::FaultProxy)
//! relays with (`Content-Length`, `Transfer-Encoding: chunked`, or a body that ends when the connection
//! closes). Plain `http://` only; no TLS, no redirects, no compression.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// The longest request/status line plus headers accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client waits to connect and for each read.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A request as a server reads it (the body de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target, e.g. `/v1/sys/health`.
    pub target: String,
    /// Header names and values, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of this name (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response as a client reads it (the body de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of this name (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (lossy UTF-8).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; `Value::Null` for an empty body.
    ///
    /// # Panics
    /// When the body is not JSON (the message shows it).
    #[must_use]
    pub fn json(&self) -> Value {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// The first header of this name (case-insensitive).
pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `http://HOST:PORT[/…]` or `HOST:PORT` → the first socket address it resolves to.
///
/// # Errors
/// An address without a port, or one that does not resolve.
pub fn socket_addr(url_or_addr: &str) -> io::Result<SocketAddr> {
    let rest = url_or_addr.strip_prefix("http://").unwrap_or(url_or_addr);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url_or_addr}: no address"),
        )
    })
}

/// The start line and headers of a message.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether a `Connection` header lists `token` (e.g. `close`).
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The head as bytes again (CRLF line ends, the blank line included), without headers named in `skip`.
    pub fn to_bytes(&self, skip: &[&str]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start_line);
        for (n, v) in &self.headers {
            if !skip.iter().any(|s| n.eq_ignore_ascii_case(s)) {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The framing of a request body.
    pub fn request_framing(&self) -> io::Result<Framing> {
        if self.is_chunked() {
            Ok(Framing::Chunked)
        } else {
            Ok(self
                .content_length()?
                .map_or(Framing::Empty, Framing::Length))
        }
    }

    /// The framing of a response body to a request of `method`.
    pub fn response_framing(&self, method: &str) -> io::Result<Framing> {
        let status = status_of(&self.start_line)?;
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            Ok(Framing::Empty)
        } else if self.is_chunked() {
            Ok(Framing::Chunked)
        } else {
            Ok(self
                .content_length()?
                .map_or(Framing::UntilClose, Framing::Length))
        }
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> io::Result<Option<usize>> {
        self.header("content-length")
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| invalid(format!("bad Content-Length {v:?}")))
            })
            .transpose()
    }
}

/// How a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The status code of a status line `HTTP/1.1 200 OK`.
pub(crate) fn status_of(status_line: &str) -> io::Result<u16> {
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(code))) if version.starts_with("HTTP/") => Ok(code),
        _ => Err(invalid(format!("bad status line {status_line:?}"))),
    }
}

/// Reads a head (start line and headers). `Ok(None)`: the peer closed the connection before sending a byte.
/// Empty lines before the start line are skipped (RFC 9112 §2.2).
pub(crate) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut total = 0;
    let mut start_line = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return if start_line.is_none() && total == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a message head",
                ))
            };
        }
        total += n;
        if total > MAX_HEAD {
            return Err(invalid(format!("message head over {MAX_HEAD} bytes")));
        }
        let text = String::from_utf8(line).map_err(|_| invalid("head is not UTF-8".to_owned()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        match &start_line {
            None if text.is_empty() => {}
            None => start_line = Some(text.to_owned()),
            Some(_) if text.is_empty() => break,
            Some(_) => {
                let (name, value) = text
                    .split_once(':')
                    .ok_or_else(|| invalid(format!("bad header line {text:?}")))?;
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    Ok(start_line.map(|start_line| Head {
        start_line,
        headers,
    }))
}

/// Reads a body: `(raw bytes as sent, de-chunked body)`.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    framing: Framing,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    match framing {
        Framing::Empty => Ok((Vec::new(), Vec::new())),
        Framing::Length(n) => {
            let mut body = vec![0; n];
            reader.read_exact(&mut body)?;
            Ok((body.clone(), body))
        }
        Framing::UntilClose => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            Ok((body.clone(), body))
        }
        Framing::Chunked => {
            let mut raw = Vec::new();
            let mut body = Vec::new();
            loop {
                let mut size_line = Vec::new();
                if reader.read_until(b'\n', &mut size_line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunked body",
                    ));
                }
                raw.extend_from_slice(&size_line);
                let text = String::from_utf8_lossy(&size_line);
                let hex = text.trim().split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
                if size == 0 {
                    // Trailers, up to an empty line.
                    loop {
                        let mut line = Vec::new();
                        if reader.read_until(b'\n', &mut line)? == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "connection closed inside chunked trailers",
                            ));
                        }
                        raw.extend_from_slice(&line);
                        if line == b"\r\n" || line == b"\n" {
                            return Ok((raw, body));
                        }
                    }
                }
                let mut chunk = vec![0; size];
                reader.read_exact(&mut chunk)?;
                raw.extend_from_slice(&chunk);
                body.extend_from_slice(&chunk);
                let mut crlf = Vec::new();
                reader.read_until(b'\n', &mut crlf)?;
                raw.extend_from_slice(&crlf);
            }
        }
    }
}

/// Server side: reads one request. `Ok(None)`: the client closed the connection between requests.
///
/// # Errors
/// A malformed request, or the connection failing or closing inside one.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let Some(head) = read_head(reader)? else {
        return Ok(None);
    };
    let (method, target) = request_line(&head.start_line)?;
    let (_, body) = read_body(reader, head.request_framing()?)?;
    Ok(Some(Request {
        method,
        target,
        headers: head.headers,
        body,
    }))
}

/// `(method, target)` of a request line `POST /v1/x HTTP/1.1`.
pub(crate) fn request_line(line: &str) -> io::Result<(String, String)> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version)) if version.starts_with("HTTP/") => {
            Ok((method.to_owned(), target.to_owned()))
        }
        _ => Err(invalid(format!("bad request line {line:?}"))),
    }
}

/// Server side: writes a response with a `Content-Length` body and these extra headers.
///
/// # Errors
/// The connection failing.
pub fn write_response(
    writer: &mut impl Write,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

/// A reason phrase for the statuses tests use.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A client connection that keeps itself alive between requests (HTTP/1.1 persistent connection).
#[derive(Debug)]
pub struct HttpConnection {
    reader: BufReader<TcpStream>,
    host: String,
}

impl HttpConnection {
    /// Connects (5 s timeout; each read then waits up to 60 s).
    ///
    /// # Errors
    /// The connection failing.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// Sends one request (with `Host` and, for a body or a non-GET/HEAD method, `Content-Length`) and reads
    /// its response.
    ///
    /// # Errors
    /// The connection failing or closing before a whole response (`UnexpectedEof`), or a malformed
    /// response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        let head = read_head(&mut self.reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let status = status_of(&head.start_line)?;
        let (_, body) = read_body(&mut self.reader, head.response_framing(method)?)?;
        Ok(Response {
            status,
            headers: head.headers,
            body,
        })
    }
}

/// One request on a connection of its own (`Connection: close`).
///
/// # Errors
/// As [`HttpConnection::send`].
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    HttpConnection::connect(addr)?.send(method, path, &all, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn chunked_bodies_are_decoded_and_kept_raw() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut reader = io::BufReader::new(&wire[..]);
        let (raw, body) = read_body(&mut reader, Framing::Chunked).unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(raw, &wire[..wire.len() - 4]);
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn heads_frame_requests_and_responses() {
        let wire = b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\n\r\nabcGET";
        let mut reader = io::BufReader::new(&wire[..]);
        let request = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(
            (
                request.method.as_str(),
                request.target.as_str(),
                &request.body[..]
            ),
            ("POST", "/x", &b"abc"[..])
        );
        assert_eq!(request.header("content-length"), Some("3"));
        let head = Head {
            start_line: "HTTP/1.1 204 No Content".into(),
            headers: vec![("Connection".into(), "keep-alive, Close".into())],
        };
        assert!(head.connection_has("close"));
        assert_eq!(head.response_framing("GET").unwrap(), Framing::Empty);
        let head = Head {
            start_line: "HTTP/1.1 200 OK".into(),
            headers: vec![],
        };
        assert_eq!(head.response_framing("GET").unwrap(), Framing::UntilClose);
        assert_eq!(head.response_framing("HEAD").unwrap(), Framing::Empty);
        assert!(read_request(&mut io::BufReader::new(&b"GET"[..])).is_err());
        assert!(
            read_request(&mut io::BufReader::new(&b""[..]))
                .unwrap()
                .is_none()
        );
        assert!(status_of("HTTP/1.1 abc").is_err());
        assert_eq!(
            socket_addr("http://127.0.0.1:8200/v1/x").unwrap().port(),
            8200
        );
    }
}
