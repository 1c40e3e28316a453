//! A local HTTP/1.1 server for connector tests: it answers with what the test's handler says
//! and records every request, so tests can assert what the connector sent (auth, paging,
//! cursors) as well as what it landed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// Decoded query parameters (the last value of a repeated name).
    pub query: HashMap<String, String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Req {
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(v: serde_json::Value) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: v.to_string(),
        }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.to_string(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

pub struct Fixture {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: Arc<Mutex<Vec<Req>>>,
}

fn decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Fixture {
    pub fn start<F>(handler: F) -> Self
    where
        F: Fn(&Req) -> Resp + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let handler = handler.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let target = parts.next().unwrap_or_default().to_string();
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).ok();
                    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
                    let query = qs
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            (decode(k), decode(v))
                        })
                        .collect();
                    let req = Req {
                        method,
                        path: path.to_string(),
                        query,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    log.lock().unwrap().push(req.clone());
                    let resp = handler(&req);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        resp.status,
                        resp.body.len()
                    );
                    for (k, v) in &resp.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&resp.body);
                    stream.write_all(out.as_bytes()).ok();
                    stream.flush().ok();
                });
            }
        });
        Self { url, requests }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to paths that start with `prefix`.
    pub fn to(&self, prefix: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

/// How the SMTP fixture answers `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    Accept,
    /// 550: the recipient is refused for good.
    Refuse,
    /// 451: try again later.
    Defer,
}

/// A plain-text SMTP server (no TLS) that keeps every message it accepts: enough of RFC 5321 for
/// lettre (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT).
pub struct Smtp {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
    /// RCPT commands received, accepted or not.
    attempts: Arc<Mutex<usize>>,
    mode: Arc<Mutex<SmtpMode>>,
}

impl Smtp {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let mode = Arc::new(Mutex::new(SmtpMode::Accept));
        let (log, tries, how) = (messages.clone(), attempts.clone(), mode.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (log, tries, how) = (log.clone(), tries.clone(), how.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut say = |s: &str| stream.write_all(s.as_bytes()).is_ok();
                    say("220 fixture ESMTP\r\n");
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_ascii_uppercase();
                        let ok = if cmd.starts_with("EHLO") {
                            say("250-fixture\r\n250 8BITMIME\r\n")
                        } else if cmd.starts_with("RCPT") {
                            *tries.lock().unwrap() += 1;
                            match *how.lock().unwrap() {
                                SmtpMode::Accept => say("250 OK\r\n"),
                                SmtpMode::Refuse => say("550 5.1.1 no such user\r\n"),
                                SmtpMode::Defer => say("451 4.3.0 try again later\r\n"),
                            }
                        } else if cmd.starts_with("DATA") {
                            say("354 go ahead\r\n");
                            let mut body = String::new();
                            loop {
                                let mut l = String::new();
                                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                                    break;
                                }
                                body.push_str(&l);
                            }
                            log.lock().unwrap().push(body);
                            say("250 OK queued\r\n")
                        } else if cmd.starts_with("QUIT") {
                            say("221 bye\r\n");
                            return;
                        } else {
                            say("250 OK\r\n")
                        };
                        if !ok {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            port,
            messages,
            attempts,
            mode,
        }
    }

    pub fn set(&self, mode: SmtpMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every message accepted so far (headers and body as sent).
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap()
    }

    pub fn clear(&self) {
        self.messages.lock().unwrap().clear();
        *self.attempts.lock().unwrap() = 0;
    }
}

/// A local address nothing listens on.
pub fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}
