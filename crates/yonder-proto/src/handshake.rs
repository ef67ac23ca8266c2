//! The connection handshake, run on the raw byte stream before HTTP/2.
//!
//! ```text
//! client -> server   MAGIC, frame(Hello)
//! server -> client   frame(HelloReply)          (error set => server closes)
//! ```
//!
//! The magic makes a wrong peer (an HTTP client, a shell's motd, a stray
//! `cat`) fail at once with a clear message instead of a confusing HTTP/2
//! error later. The token check is constant-time.

use crate::frame;
use crate::limits::MAX_HANDSHAKE_FRAME;
use crate::pb::{ErrorKind, Hello, HelloReply};
use crate::{CAPABILITIES, PROTOCOL_VERSION, YONDER_VERSION};
use bytes::BytesMut;
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first bytes of every yonder connection.
pub const MAGIC: &[u8; 8] = b"YONDER\r\n";

/// The first bytes of the server's reply. The client skips anything before
/// them: a remote login shell may print a motd or `echo` from its rc files
/// onto the same stdout before `yonder server proxy` starts.
pub const SERVER_MAGIC: &[u8; 8] = b"YONDERS\n";

/// Noise tolerated before the server's reply.
pub const MAX_NOISE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection closed or failed during the handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer is not a yonder endpoint (it sent {got:?} instead of the yonder greeting)")]
    BadMagic { got: String },
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    #[error(
        "yonder {client_version} (protocol {client_protocol}) and the server's yonder \
         {server_version} (protocol {server_protocol}) cannot talk to each other; \
         install matching versions"
    )]
    VersionMismatch {
        client_version: String,
        client_protocol: u32,
        server_version: String,
        server_protocol: u32,
    },
    #[error("the server refused the connection: wrong or missing token")]
    Unauthenticated,
    #[error("the server refused the connection: {0}")]
    Refused(String),
    #[error("no yonder server answered; the other side printed instead: {0:?}")]
    Noise(String),
}

impl HandshakeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::VersionMismatch { .. } => ErrorKind::VersionMismatch,
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            _ => ErrorKind::InvalidArgument,
        }
    }
}

fn show_bytes(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect()
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    prefix: &[u8],
    msg: &impl Message,
) -> std::io::Result<()> {
    let mut out = BytesMut::from(prefix);
    frame::encode(&msg.encode_to_vec(), &mut out);
    w.write_all(&out).await?;
    w.flush().await
}

/// Reads up to and including [`SERVER_MAGIC`], one byte at a time so that
/// nothing after it (the reply, then HTTP/2) is consumed.
async fn skip_noise<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(), HandshakeError> {
    let mut seen: Vec<u8> = Vec::with_capacity(64);
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b).await {
            Ok(0) if seen.is_empty() => {
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(0) => {
                return Err(HandshakeError::Noise(show_bytes(
                    &seen[seen.len().saturating_sub(300)..],
                )));
            }
            Ok(_) => seen.push(b[0]),
            Err(e) => return Err(e.into()),
        }
        if seen.ends_with(SERVER_MAGIC) {
            return Ok(());
        }
        if seen.len() > MAX_NOISE {
            return Err(HandshakeError::Noise(show_bytes(&seen[..300])));
        }
    }
}

/// Client side: greets the server and checks its reply.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: &[u8],
) -> Result<HelloReply, HandshakeError> {
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        yonder_version: YONDER_VERSION.to_string(),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        token: bytes::Bytes::copy_from_slice(token),
    };
    write_frame(stream, MAGIC, &hello).await?;
    skip_noise(stream).await?;
    let body = frame::read_one(stream, MAX_HANDSHAKE_FRAME).await?;
    let reply = HelloReply::decode(body).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    match ErrorKind::try_from(reply.error_kind).unwrap_or(ErrorKind::Internal) {
        ErrorKind::Unspecified if reply.error.is_empty() => {}
        ErrorKind::Unauthenticated => return Err(HandshakeError::Unauthenticated),
        ErrorKind::VersionMismatch => {
            return Err(HandshakeError::VersionMismatch {
                client_version: YONDER_VERSION.into(),
                client_protocol: PROTOCOL_VERSION,
                server_version: reply.yonder_version,
                server_protocol: reply.protocol_version,
            });
        }
        _ => return Err(HandshakeError::Refused(reply.error)),
    }
    if reply.protocol_version != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch {
            client_version: YONDER_VERSION.into(),
            client_protocol: PROTOCOL_VERSION,
            server_version: reply.yonder_version,
            server_protocol: reply.protocol_version,
        });
    }
    Ok(reply)
}

/// Server side: reads the client's greeting, checks version and token, and
/// answers. On error the reply (when the peer got far enough to understand
/// one) has already been sent; the caller just closes the connection.
///
/// `expected_token` is `None` on unix sockets, where the directory mode is the
/// authentication.
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    expected_token: Option<&[u8]>,
) -> Result<Hello, HandshakeError> {
    let mut magic = [0u8; MAGIC.len()];
    stream.read_exact(&mut magic).await?;
    if &magic != MAGIC {
        return Err(HandshakeError::BadMagic {
            got: show_bytes(&magic),
        });
    }
    let body = frame::read_one(stream, MAX_HANDSHAKE_FRAME).await?;
    let hello = Hello::decode(body).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let mut reply = HelloReply {
        protocol_version: PROTOCOL_VERSION,
        yonder_version: YONDER_VERSION.to_string(),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        error_kind: ErrorKind::Unspecified as i32,
        error: String::new(),
    };
    let outcome = if let Some(expected) = expected_token
        && !bool::from(hello.token.as_ref().ct_eq(expected))
    {
        Err(HandshakeError::Unauthenticated)
    } else if hello.protocol_version != PROTOCOL_VERSION {
        Err(HandshakeError::VersionMismatch {
            client_version: hello.yonder_version.clone(),
            client_protocol: hello.protocol_version,
            server_version: YONDER_VERSION.into(),
            server_protocol: PROTOCOL_VERSION,
        })
    } else {
        Ok(())
    };
    if let Err(e) = &outcome {
        reply.error_kind = e.kind() as i32;
        reply.error = e.to_string();
    }
    write_frame(stream, SERVER_MAGIC, &reply).await?;
    outcome.map(|()| hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn matching_peers_agree() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (c, s) = tokio::join!(client(&mut a, b"tok"), server(&mut b, Some(b"tok")));
        assert_eq!(c.unwrap().protocol_version, PROTOCOL_VERSION);
        assert_eq!(s.unwrap().yonder_version, YONDER_VERSION);
    }

    #[tokio::test]
    async fn wrong_token_is_refused_on_both_sides() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (c, s) = tokio::join!(client(&mut a, b"nope"), server(&mut b, Some(b"tok")));
        assert!(matches!(c, Err(HandshakeError::Unauthenticated)), "{c:?}");
        assert!(matches!(s, Err(HandshakeError::Unauthenticated)), "{s:?}");
    }

    #[tokio::test]
    async fn a_version_mismatch_names_both_versions() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let hello = Hello {
            protocol_version: 99,
            yonder_version: "9.9.9".into(),
            ..Default::default()
        };
        let fake_client = async {
            write_frame(&mut a, MAGIC, &hello).await.unwrap();
            skip_noise(&mut a).await.unwrap();
            let body = frame::read_one(&mut a, MAX_HANDSHAKE_FRAME).await.unwrap();
            HelloReply::decode(body).unwrap()
        };
        let (reply, s) = tokio::join!(fake_client, server(&mut b, None));
        let msg = s.unwrap_err().to_string();
        assert!(
            msg.contains("9.9.9") && msg.contains(YONDER_VERSION),
            "{msg}"
        );
        assert_eq!(reply.error_kind, ErrorKind::VersionMismatch as i32);
        assert!(reply.error.contains("protocol 99"), "{}", reply.error);
    }

    #[tokio::test]
    async fn shell_noise_before_the_reply_is_skipped() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let noisy_server = async {
            b.write_all(b"Welcome to Debian!\nmotd-noise\n")
                .await
                .unwrap();
            server(&mut b, None).await
        };
        let (c, s) = tokio::join!(client(&mut a, b""), noisy_server);
        assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");
        // Only noise, then the end: the error shows what was printed.
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let fake = async {
            b.write_all(b"bash: yonder: command not found\n")
                .await
                .unwrap();
            drop(b);
        };
        let (c, ()) = tokio::join!(client(&mut a, b""), fake);
        let msg = c.unwrap_err().to_string();
        assert!(msg.contains("command not found"), "{msg}");
    }

    #[tokio::test]
    async fn garbage_is_not_a_yonder_peer() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = server(&mut b, None).await.unwrap_err();
        assert!(matches!(err, HandshakeError::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("GET / HT"), "{err}");
    }
}
