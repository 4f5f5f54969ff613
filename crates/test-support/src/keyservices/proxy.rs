//! A fault-injecting HTTP/1.1 proxy on a free loopback port, in front of a key-service test server, so a
//! test can make the service throttle, fail or restart at a moment of its choosing and see what a client
//! sent.
//!
//! Every connection is served by a thread of its own that reads one whole request at a time (head, then the
//! body framed by `Content-Length` or chunked encoding) and only then asks the current [`Mode`] what to do
//! with it, so a mode set with [`FaultProxy::set_mode`] takes effect at the next request, also on a
//! keep-alive connection opened before. Forwarded requests go over one upstream connection per client
//! connection (kept alive while the upstream allows it, reopened once when an idle one was closed), and the
//! response is relayed once read whole (its head written again line by line, its body as sent).

use std::collections::HashMap;
use std::io::{self, BufReader, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::http::{self, Framing, Head};

/// How long the proxy waits for the upstream to connect and for each read of its response.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What the proxy does with the next request; set at any time with [`FaultProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward each request to the upstream and relay its response.
    Pass,
    /// As a server that is restarting: a new connection is accepted and closed at once, without reading
    /// or writing a byte; a request that arrives on a connection opened before is read, then its connection
    /// is closed without an answer.
    Refuse,
    /// Answer each request with this status, the injected body (see [`FaultProxy::set_injected_body`]) and
    /// `Connection: close`, then close the connection. The upstream sees nothing.
    Status(u16),
    /// Answer the next n requests as [`Mode::Status`] does, then switch to [`Mode::Pass`].
    StatusTimes(u16, u32),
}

/// A request a client sent through the proxy (kept while [`FaultProxy::record`] is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request line, e.g. `POST /v1/transit/sign/issuer/sha2-256 HTTP/1.1`.
    pub request_line: String,
    /// Header names and values, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The method (`POST`).
    #[must_use]
    pub fn method(&self) -> &str {
        self.request_line.split(' ').next().unwrap_or("")
    }

    /// The request target (`/v1/transit/sign/issuer/sha2-256`).
    #[must_use]
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or("")
    }

    /// The first header of this name (case-insensitive), e.g. `X-Amz-Target` (`TrentService.Decrypt`).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        http::find_header(&self.headers, name)
    }

    /// The body as text (lossy UTF-8).
    #[must_use]
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Value::Null` when it is empty or not JSON).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A running proxy; its listener and connections close when it is dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    injected_body: Mutex<(String, String)>,
    connections: AtomicU64,
    requests: AtomicU64,
    forwarded: AtomicU64,
    injected: AtomicU64,
    refused: AtomicU64,
    /// Requests read whole and not yet answered (or dropped), and the most there ever were at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    record: AtomicBool,
    recorded: Mutex<Vec<Recorded>>,
    /// Each client connection's sockets (client side, upstream side), to shut them down from outside.
    live: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_id: AtomicU64,
    stop: AtomicBool,
}

/// Locks a mutex; a panicking connection thread leaves plain data behind, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`, with or without a path, or `127.0.0.1:PORT`)
    /// in [`Mode::Pass`], listening on a free loopback port.
    ///
    /// # Panics
    /// When `upstream` is no address or no loopback port can be bound.
    #[must_use]
    pub fn start(upstream: &str) -> Self {
        let upstream = http::socket_addr(upstream)
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy's loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            injected_body: Mutex::new((
                "application/json".to_owned(),
                r#"{"errors":["injected"]}"#.to_owned(),
            )),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            record: AtomicBool::new(false),
            recorded: Mutex::new(Vec::new()),
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Self {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy (give it to the client instead of the server's).
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy's socket address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream it forwards to.
    #[must_use]
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Switches what happens to the next request (and, for [`Mode::Refuse`], the next connection).
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// The current mode ([`Mode::StatusTimes`] counts down, then becomes [`Mode::Pass`]).
    #[must_use]
    pub fn mode(&self) -> Mode {
        *lock(&self.shared.mode)
    }

    /// The body of injected answers (default `application/json`, `{"errors":["injected"]}`, as Vault
    /// writes errors); e.g. `application/x-amz-json-1.1` with `{"__type":"ThrottlingException",…}` for KMS.
    pub fn set_injected_body(&self, content_type: &str, body: &str) {
        *lock(&self.shared.injected_body) = (content_type.to_owned(), body.to_owned());
    }

    /// HTTP requests read from clients, whatever happened to them (forwarded, answered with an injected
    /// status, or dropped by [`Mode::Refuse`]); connections refused before a request are not counted.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests forwarded to the upstream whose response was relayed whole to the client.
    #[must_use]
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Requests answered with an injected status.
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// Connections closed and requests dropped by [`Mode::Refuse`].
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Client connections accepted (including those [`Mode::Refuse`] closed at once).
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most requests the proxy ever held at once: read whole from a client and not yet answered,
    /// forwarded or dropped. This is how many requests a client really had in flight, which connections
    /// cannot say (an HTTP/1.1 client may open a connection more while one it could reuse is being handed
    /// back to its pool, and a server answering `Connection: close` costs a connection per request).
    #[must_use]
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Turns keeping a copy of each request on or off (off at start).
    pub fn record(&self, on: bool) {
        self.shared.record.store(on, Ordering::SeqCst);
    }

    /// The requests kept so far, in the order they were read.
    #[must_use]
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).clone()
    }

    /// Forgets the requests kept so far.
    pub fn clear_recorded(&self) {
        lock(&self.shared.recorded).clear();
    }

    /// Closes every live connection, client and upstream side (what clients see of a server restart; new
    /// connections are served as the mode says).
    pub fn drop_all(&self) {
        self.shared.drop_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.shared.drop_all();
    }
}

/// What to do with one request.
enum Action {
    Forward,
    Close,
    Answer(u16),
}

impl Shared {
    fn decide(&self) -> Action {
        let mut mode = lock(&self.mode);
        match *mode {
            Mode::Pass => Action::Forward,
            Mode::Refuse => Action::Close,
            Mode::Status(status) => Action::Answer(status),
            Mode::StatusTimes(_, 0) => {
                *mode = Mode::Pass;
                Action::Forward
            }
            Mode::StatusTimes(status, n) => {
                *mode = if n == 1 {
                    Mode::Pass
                } else {
                    Mode::StatusTimes(status, n - 1)
                };
                Action::Answer(status)
            }
        }
    }

    fn register(&self, id: u64, stream: &TcpStream) {
        if let Ok(clone) = stream.try_clone() {
            lock(&self.live).entry(id).or_default().push(clone);
        }
    }

    fn drop_all(&self) {
        for streams in lock(&self.live).values() {
            for stream in streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        if *lock(&shared.mode) == Mode::Refuse {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let shared = Arc::clone(shared);
        std::thread::spawn(move || {
            let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
            shared.register(id, &stream);
            let _ = serve(&shared, id, stream);
            if let Some(streams) = lock(&shared.live).remove(&id) {
                for stream in streams {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        });
    }
}

/// One request held by the proxy, counted in [`Shared::in_flight`] until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one client connection until either side closes it.
fn serve(shared: &Shared, id: u64, client: TcpStream) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    let mut upstream: Option<Upstream> = None;
    loop {
        let Some(head) = http::read_head(&mut reader)? else {
            return Ok(());
        };
        let (method, _) = http::request_line(&head.start_line)?;
        let expects_continue = head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects_continue {
            // The proxy takes the body itself (the upstream never sees the `Expect`).
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let (raw_body, body) = http::read_body(&mut reader, head.request_framing()?)?;
        // Held until just before the client can see the answer (or the close), so a client that sends its
        // next request the moment it has an answer never finds this one still counted.
        let in_flight = InFlight::new(shared);
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if shared.record.load(Ordering::SeqCst) {
            lock(&shared.recorded).push(Recorded {
                request_line: head.start_line.clone(),
                headers: head.headers.clone(),
                body,
            });
        }
        match shared.decide() {
            Action::Close => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                drop(in_flight);
                return Ok(());
            }
            Action::Answer(status) => {
                let (content_type, body) = lock(&shared.injected_body).clone();
                shared.injected.fetch_add(1, Ordering::SeqCst);
                drop(in_flight);
                http::write_response(
                    &mut writer,
                    status,
                    &[("Content-Type", &content_type), ("Connection", "close")],
                    body.as_bytes(),
                )?;
                return Ok(());
            }
            Action::Forward => {
                let mut request = head.to_bytes(&["expect"]);
                request.extend_from_slice(&raw_body);
                let (response, raw) = forward(shared, id, &mut upstream, &method, &request)?;
                // Counted before the client can see the answer, so a test reads a settled count.
                shared.forwarded.fetch_add(1, Ordering::SeqCst);
                drop(in_flight);
                writer.write_all(&raw)?;
                writer.flush()?;
                let until_close = response.response_framing(&method)? == Framing::UntilClose;
                let http10 =
                    |h: &Head| h.start_line.contains("HTTP/1.0") && !h.connection_has("keep-alive");
                if until_close
                    || response.connection_has("close")
                    || head.connection_has("close")
                    || http10(&response)
                    || http10(&head)
                {
                    return Ok(());
                }
            }
        }
    }
}

/// The upstream connection of one client connection.
struct Upstream {
    reader: BufReader<TcpStream>,
}

/// Sends `request` upstream and reads the whole response: `(its head, its raw bytes)`. A kept-alive upstream
/// connection that turns out closed before answering a byte is replaced once.
fn forward(
    shared: &Shared,
    id: u64,
    upstream: &mut Option<Upstream>,
    method: &str,
    request: &[u8],
) -> io::Result<(Head, Vec<u8>)> {
    loop {
        let reused = upstream.is_some();
        let connection = match upstream {
            Some(connection) => connection,
            None => {
                let stream =
                    TcpStream::connect_timeout(&shared.upstream, UPSTREAM_CONNECT_TIMEOUT)?;
                stream.set_read_timeout(Some(UPSTREAM_READ_TIMEOUT))?;
                stream.set_nodelay(true)?;
                shared.register(id, &stream);
                upstream.insert(Upstream {
                    reader: BufReader::new(stream),
                })
            }
        };
        match exchange(connection, method, request) {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) if reused => *upstream = None,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection without answering",
                ));
            }
            Err(e) => {
                *upstream = None;
                return Err(e);
            }
        }
    }
}

/// One request and response on an upstream connection; `Ok(None)`: closed before a byte of the response
/// (or the request could not be written), so the request may be sent again on a new connection.
fn exchange(
    connection: &mut Upstream,
    method: &str,
    request: &[u8],
) -> io::Result<Option<(Head, Vec<u8>)>> {
    let stream = connection.reader.get_mut();
    if stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .is_err()
    {
        return Ok(None);
    }
    let head = match http::read_head(&mut connection.reader) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(e),
    };
    let (raw_body, _) = http::read_body(&mut connection.reader, head.response_framing(method)?)?;
    let mut raw = head.to_bytes(&[]);
    raw.extend_from_slice(&raw_body);
    Ok(Some((head, raw)))
}
