//! yonder's browser workbench: a loopback web server in the local `yonder`
//! process that serves the embedded front end and bridges one websocket per
//! page to a [`yonder_client::Client`] connected to the target.
//!
//! ```text
//! browser tab ──HTTP + one websocket (JSON)──► yonder web (127.0.0.1:PORT) ──Client──► target
//! ```
//!
//! Security, because any web page the user visits can reach 127.0.0.1:
//! - the server binds 127.0.0.1 only, on a random port unless one is asked for;
//! - the printed URL carries a one-time 256-bit token, exchanged on first use
//!   for an `HttpOnly; SameSite=Strict` session cookie (then the URL is
//!   useless to anyone who sees it later, e.g. in shell history);
//! - every request needs the cookie (compared in constant time) and a `Host`
//!   of `127.0.0.1:PORT` or `localhost:PORT` (defeats DNS rebinding);
//! - the websocket also needs an `Origin` of this very server (browsers send
//!   cookies with cross-site websocket handshakes; Origin is what stops them);
//! - every response carries a strict Content-Security-Policy.
//!
//! The front end (`web/`, TypeScript) is built into `web/dist` by
//! `scripts/setup` and embedded with `rust-embed` (read from disk in debug
//! builds, inside the binary in release builds).

mod bridge;
mod forwards;
mod prompts;
mod target;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

pub use forwards::Forwards;
pub use prompts::Prompts;
pub use target::{Connector, TargetLink, TargetState};

/// The session cookie's name.
const COOKIE: &str = "yonder_session";

/// Largest websocket message the page may send: a file being saved or
/// uploaded travels in one message (JSON-escaped text or base64), so this
/// bounds the biggest file the workbench can save, with room for escaping.
pub const MAX_WS_MESSAGE: usize = 96 * 1024 * 1024;

/// The Content-Security-Policy of every response. Scripts only from this
/// origin (no inline script, no eval); styles allow inline because
/// CodeMirror and xterm.js set element styles at run time; the websocket is
/// same-origin (`'self'` covers ws: on the same host and port in CSP 3).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist"]
struct Assets;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("the web server stopped: {0}")]
    Serve(std::io::Error),
}

/// What the workbench shows.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// 0: any free port.
    pub port: u16,
    /// The target as the user typed it, for the status bar.
    pub target: String,
}

/// State shared by every request and websocket.
pub(crate) struct Shared {
    /// The target connection (reconnected when it drops).
    pub link: Arc<TargetLink>,
    pub opts: WebOptions,
    pub port: u16,
    /// The one-time token; `None` once exchanged for the cookie.
    token: Mutex<Option<String>>,
    /// The session cookie's value, set when the token is exchanged.
    session: Mutex<Option<String>>,
    pub forwards: Forwards,
    /// ssh's questions while connecting, answered in a page.
    pub prompts: Arc<Prompts>,
}

/// A bound, not yet serving, workbench server.
pub struct WebServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    token: String,
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("port", &self.shared.port)
            .finish()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

impl WebServer {
    /// Binds 127.0.0.1 on `opts.port` (0: random). [`WebServer::run`] then
    /// connects with `connector` (its ssh questions go to `prompts`, shown
    /// in the page), and re-makes a dropped connection (pages are told).
    pub async fn bind(
        connector: Connector,
        prompts: Arc<Prompts>,
        opts: WebOptions,
    ) -> Result<Self, WebError> {
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .map_err(|source| WebError::Bind {
                port: opts.port,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| WebError::Bind {
                port: opts.port,
                source,
            })?
            .port();
        let token = random_hex(32);
        let link = TargetLink::new(connector);
        let forwards = Forwards::new(link.clone(), port);
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                link,
                opts,
                port,
                token: Mutex::new(Some(token.clone())),
                session: Mutex::new(None),
                forwards,
                prompts,
            }),
            token,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.shared.port))
    }

    /// The URL to open, with the one-time token.
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/?token={}",
            self.shared.port, self.token
        )
    }

    /// Connects to the target and serves until the process ends (pages can
    /// load while the connection is being made).
    pub async fn run(self) -> Result<(), WebError> {
        let supervisor = tokio::spawn(self.shared.link.clone().supervise());
        let r = self.serve().await;
        supervisor.abort();
        r
    }

    async fn serve(self) -> Result<(), WebError> {
        let app = Router::new()
            .route("/ws", get(websocket))
            .fallback(get(asset))
            .layer(middleware::from_fn_with_state(self.shared.clone(), guard))
            .with_state(self.shared);
        // Terminal echo is one small websocket frame after another: without
        // NODELAY, Nagle holds each behind the previous one's delayed ACK.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.map_err(WebError::Serve)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("yonder web: {why}\n"),
    )
        .into_response()
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Host, token/cookie and Origin checks in front of every route.
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let mut resp = check(&s, req, next).await;
    secure_headers(resp.headers_mut());
    resp
}

async fn check(s: &Shared, req: Request, next: Next) -> Response {
    let host_ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            h == format!("127.0.0.1:{}", s.port) || h == format!("localhost:{}", s.port)
        });
    if !host_ok {
        return refuse(StatusCode::FORBIDDEN, "wrong Host header");
    }
    let session_ok = {
        let session = lock(&s.session);
        match (session.as_deref(), cookie_value(req.headers(), COOKIE)) {
            (Some(want), Some(got)) => ct_eq(want, got),
            _ => false,
        }
    };
    if let Some(t) = query_token(req.uri().query()) {
        // The token in the URL: exchange it for the cookie and drop it from
        // the address bar (and from the history) with a redirect.
        let exchanged = {
            let mut token = lock(&s.token);
            match token.as_deref() {
                Some(want) if ct_eq(want, t) => {
                    *token = None;
                    let v = random_hex(32);
                    *lock(&s.session) = Some(v.clone());
                    Some(v)
                }
                _ => None,
            }
        };
        return match (exchanged, session_ok) {
            (Some(v), _) => Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, "/")
                .header(
                    header::SET_COOKIE,
                    format!("{COOKIE}={v}; HttpOnly; SameSite=Strict; Path=/"),
                )
                .header(header::CACHE_CONTROL, "no-store")
                .body(Body::empty())
                .expect("static response"),
            // Already signed in (e.g. the URL opened twice): just go on.
            (None, true) => Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, "/")
                .body(Body::empty())
                .expect("static response"),
            (None, false) => refuse(
                StatusCode::UNAUTHORIZED,
                "this token is wrong or was already used; restart `yonder web` for a new URL",
            ),
        };
    }
    if !session_ok {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "not signed in: open the URL printed by `yonder web` (it carries a one-time token)",
        );
    }
    if req.uri().path() == "/ws" {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok());
        let ok = origin.is_some_and(|o| {
            o == format!("http://127.0.0.1:{}", s.port)
                || o == format!("http://localhost:{}", s.port)
        });
        if !ok {
            return refuse(
                StatusCode::FORBIDDEN,
                "websocket refused: its Origin is not this workbench",
            );
        }
    }
    next.run(req).await
}

async fn websocket(State(s): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| bridge::run(socket, s))
}

async fn asset(req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Assets::get(path) {
        Some(f) => {
            let mime = f.metadata.mimetype().to_string();
            // Vite names assets by content hash: they never change.
            let cache = if path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-store"
            };
            Response::builder()
                .header(header::CONTENT_TYPE, mime)
                .header(header::CACHE_CONTROL, cache)
                .body(Body::from(f.data.into_owned()))
                .expect("static response")
        }
        None => refuse(StatusCode::NOT_FOUND, "no such page"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; yonder_session=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("xyz"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("yonder_sessionx=1"),
        );
        assert_eq!(cookie_value(&h, COOKIE), None);
    }

    #[test]
    fn token_is_read_from_the_query() {
        assert_eq!(query_token(Some("a=b&token=t0k")), Some("t0k"));
        assert_eq!(query_token(Some("tokenx=1")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn constant_time_compare_needs_equal_length() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
    }
}
