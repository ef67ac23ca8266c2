//! Forward calls (see the `forward` service in the schema): TCP tunnels in
//! both directions and listening-port discovery.
//!
//! A [`Tunnel`] is one forwarded connection, one gRPC call. It is an
//! `AsyncRead + AsyncWrite` (so `tokio::io::copy_bidirectional` works), it
//! splits into halves, and [`Tunnel::relay`] pumps it against a socket with
//! large chunks and no extra copy. Shutting down the write side sends `eof`
//! (the far socket sees `shutdown(SHUT_WR)`); reads return end of file when
//! the far side shut down its writing. Dropping a tunnel whose write side
//! is still open aborts the far connection; after a shutdown, the call is
//! left to finish delivering what was written (bounded by [`LINGER`]).

use crate::{Client, RemoteStream, Result, remote};
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use yonder_proto::RemoteError;
use yonder_proto::limits::{DATA_CHUNK, STREAM_QUEUE};
use yonder_proto::pb::{self, ErrorKind, listen_event, tunnel_message};

pub use yonder_proto::pb::PortEvent;

/// How long a dropped tunnel whose writer was closed cleanly keeps its call
/// open for the server to finish. Without it, dropping the call right after
/// the last write would reset the stream and could discard data still
/// queued for the far side (HTTP/2 RST_STREAM drops what is not yet sent).
/// The server ends the call as soon as both directions are done, so this is
/// only reached when the far side keeps its writing open.
pub const LINGER: Duration = Duration::from_secs(30);

fn msg(m: tunnel_message::Message) -> pb::TunnelMessage {
    pb::TunnelMessage { message: Some(m) }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the tunnel is closed")
}

type Reserve = Pin<
    Box<
        dyn Future<
                Output = Result<mpsc::OwnedPermit<pb::TunnelMessage>, mpsc::error::SendError<()>>,
            > + Send,
    >,
>;

/// The sending half of a [`Tunnel`].
pub struct TunnelWriter {
    /// `None` once `eof` was sent: the request stream then ends.
    tx: Option<mpsc::Sender<pb::TunnelMessage>>,
    /// A queue slot being waited for by `poll_write`/`poll_shutdown`.
    reserving: Option<Reserve>,
    /// Set once `eof` is queued; shared with the reader, which then lets the
    /// call finish instead of resetting it when dropped.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for TunnelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelWriter")
            .field("open", &self.tx.is_some())
            .finish()
    }
}

impl TunnelWriter {
    /// Sends `data` (in chunks below the message cap). Waits while the
    /// queue and the stream window are full.
    pub async fn send(&mut self, data: Bytes) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        let mut data = data;
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(DATA_CHUNK));
            tx.send(msg(tunnel_message::Message::Data(piece)))
                .await
                .map_err(|_| closed())?;
        }
        Ok(())
    }

    /// Half-closes: the far side reads end of file. Further sends fail.
    pub async fn close(&mut self) -> io::Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.send(msg(tunnel_message::Message::Eof(pb::Empty {})))
                .await
                .map_err(|_| closed())?;
            self.closed.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn poll_permit(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<mpsc::OwnedPermit<pb::TunnelMessage>>> {
        let Some(tx) = &self.tx else {
            return Poll::Ready(Err(closed()));
        };
        let fut = self
            .reserving
            .get_or_insert_with(|| Box::pin(tx.clone().reserve_owned()));
        let r = ready!(fut.as_mut().poll(cx));
        self.reserving = None;
        Poll::Ready(r.map_err(|_| closed()))
    }
}

impl AsyncWrite for TunnelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let permit = ready!(self.poll_permit(cx))?;
        let n = buf.len().min(DATA_CHUNK);
        permit.send(msg(tunnel_message::Message::Data(Bytes::copy_from_slice(
            &buf[..n],
        ))));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued messages go out as the stream window allows; there is no
        // buffer here to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.tx.is_none() {
            return Poll::Ready(Ok(()));
        }
        let permit = ready!(self.poll_permit(cx))?;
        permit.send(msg(tunnel_message::Message::Eof(pb::Empty {})));
        self.tx = None;
        self.closed.store(true, Ordering::Release);
        Poll::Ready(Ok(()))
    }
}

/// The receiving half of a [`Tunnel`].
pub struct TunnelReader {
    /// `None` only while being dropped.
    stream: Option<tonic::Streaming<pb::TunnelMessage>>,
    /// The server ended the call: nothing to linger for.
    ended: bool,
    /// See [`TunnelWriter::closed`].
    writer_closed: Arc<AtomicBool>,
    /// Unread rest of the last chunk (for `AsyncRead`).
    buf: Bytes,
    eof: bool,
}

impl std::fmt::Debug for TunnelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelReader")
            .field("eof", &self.eof)
            .finish()
    }
}

fn status_to_io(s: tonic::Status) -> io::Error {
    let e = remote(s);
    io::Error::new(io::ErrorKind::ConnectionReset, e.to_string())
}

impl TunnelReader {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.buf.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.buf))));
        }
        loop {
            if self.eof {
                return Poll::Ready(Ok(None));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            match ready!(stream.poll_next_unpin(cx)) {
                Some(Ok(pb::TunnelMessage {
                    message: Some(tunnel_message::Message::Data(d)),
                })) => {
                    if !d.is_empty() {
                        return Poll::Ready(Ok(Some(d)));
                    }
                }
                // The server ends the call only when the connection is
                // closed; both mean end of file here.
                Some(Ok(pb::TunnelMessage {
                    message: Some(tunnel_message::Message::Eof(_)),
                })) => self.eof = true,
                None => {
                    self.eof = true;
                    self.ended = true;
                }
                Some(Ok(_)) => {}
                Some(Err(s)) => {
                    self.eof = true;
                    self.ended = true;
                    return Poll::Ready(Err(status_to_io(s)));
                }
            }
        }
    }

    /// The next chunk the far side sent; `None` at end of file.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

impl Drop for TunnelReader {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        // Not closed cleanly: drop the call now, which resets it and closes
        // the far connection at once (the abort a dropped socket means).
        if self.ended || !self.writer_closed.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        });
    }
}

impl AsyncRead for TunnelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let Some(mut chunk) = ready!(self.poll_chunk(cx))? else {
            return Poll::Ready(Ok(()));
        };
        let n = chunk.len().min(out.remaining());
        out.put_slice(&chunk[..n]);
        chunk.advance(n);
        self.buf = chunk;
        Poll::Ready(Ok(()))
    }
}

/// One forwarded TCP connection. Dropping it without a shutdown aborts the
/// far connection.
#[derive(Debug)]
pub struct Tunnel {
    reader: TunnelReader,
    writer: TunnelWriter,
}

/// Bytes moved by [`Tunnel::relay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// From the local stream to the far side.
    pub sent: u64,
    /// From the far side to the local stream.
    pub received: u64,
}

impl Tunnel {
    pub fn split(self) -> (TunnelReader, TunnelWriter) {
        (self.reader, self.writer)
    }

    /// Pumps both directions between this tunnel and `io` until both have
    /// reached end of file, honouring half-close each way. Chunks read from
    /// `io` travel without an extra copy.
    pub async fn relay<S>(self, io: S) -> io::Result<Relayed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (mut reader, mut writer) = self.split();
        let up = async {
            let mut sent = 0u64;
            let mut buf = BytesMut::new();
            loop {
                buf.reserve(DATA_CHUNK);
                let n = rd.read_buf(&mut buf).await?;
                if n == 0 {
                    writer.close().await?;
                    return Ok::<_, io::Error>(sent);
                }
                sent += n as u64;
                writer.send(buf.split().freeze()).await?;
            }
        };
        let down = async {
            let mut received = 0u64;
            while let Some(chunk) = reader.recv().await? {
                received += chunk.len() as u64;
                wr.write_all(&chunk).await?;
            }
            wr.shutdown().await?;
            Ok::<_, io::Error>(received)
        };
        let (sent, received) = tokio::try_join!(up, down)?;
        Ok(Relayed { sent, received })
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// A port the server listens on for [`Client::listen`] (ssh -R). Dropping
/// it stops listening.
pub struct RemoteListener {
    /// The port bound on the server (the chosen one when 0 was asked for).
    pub port: u16,
    events: tonic::Streaming<pb::ListenEvent>,
}

impl std::fmt::Debug for RemoteListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteListener")
            .field("port", &self.port)
            .finish()
    }
}

impl RemoteListener {
    /// The id of the next connection the server accepted, to claim with
    /// [`Client::accept`]; `None` when the server stopped listening.
    pub async fn next(&mut self) -> Option<Result<u64>> {
        loop {
            match self.events.message().await {
                Ok(Some(pb::ListenEvent {
                    event: Some(listen_event::Event::Accepted(id)),
                })) => return Some(Ok(id)),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(s) => return Some(Err(remote(s))),
            }
        }
    }
}

impl Client {
    async fn tunnel(&self, first: tunnel_message::Message, accept: bool) -> Result<Tunnel> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tx.send(msg(first)).await.expect("receiver alive");
        let mut fwd = self.forward.clone();
        let stream = if accept {
            fwd.accept(ReceiverStream::new(rx)).await
        } else {
            fwd.dial(ReceiverStream::new(rx)).await
        }
        .map_err(remote)?
        .into_inner();
        let closed = Arc::new(AtomicBool::new(false));
        Ok(Tunnel {
            reader: TunnelReader {
                stream: Some(stream),
                ended: false,
                writer_closed: closed.clone(),
                buf: Bytes::new(),
                eof: false,
            },
            writer: TunnelWriter {
                tx: Some(tx),
                reserving: None,
                closed,
            },
        })
    }

    /// Connects from the server to `host:port` (ssh -L). Fails when the
    /// server cannot connect (refused, unreachable, no answer).
    pub async fn dial(&self, host: &str, port: u16) -> Result<Tunnel> {
        self.tunnel(
            tunnel_message::Message::Connect(pb::TcpTarget {
                host: host.to_string(),
                port: port.into(),
            }),
            false,
        )
        .await
    }

    /// Listens on the server (ssh -R) at `bind_host` (empty: 127.0.0.1) and
    /// `port` (0: any free port).
    pub async fn listen(&self, bind_host: &str, port: u16) -> Result<RemoteListener> {
        let mut events = self
            .forward
            .clone()
            .listen(pb::ListenRequest {
                bind_host: bind_host.to_string(),
                port: port.into(),
            })
            .await
            .map_err(remote)?
            .into_inner();
        match events.message().await.map_err(remote)? {
            Some(pb::ListenEvent {
                event: Some(listen_event::Event::BoundPort(p)),
            }) => Ok(RemoteListener {
                port: u16::try_from(p).map_err(|_| {
                    RemoteError::new(ErrorKind::Internal, format!("server bound port {p}"))
                })?,
                events,
            }),
            _ => Err(RemoteError::new(
                ErrorKind::Internal,
                "the server did not report the port it listens on",
            )),
        }
    }

    /// Claims a connection announced by a [`RemoteListener`].
    pub async fn accept(&self, id: u64) -> Result<Tunnel> {
        self.tunnel(tunnel_message::Message::AcceptId(id), true)
            .await
    }

    /// The TCP ports the user's processes on the server listen on: first
    /// those already listening, then each change, polled every `interval`
    /// (`None`: the server's default, 1 s).
    pub async fn watch_ports(&self, interval: Option<Duration>) -> Result<RemoteStream<PortEvent>> {
        let ms = interval.map_or(0, |d| {
            u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
        });
        let s = self
            .forward
            .clone()
            .watch_ports(pb::WatchPortsRequest {
                poll_interval_ms: ms,
            })
            .await
            .map_err(remote)?
            .into_inner();
        Ok(RemoteStream {
            inner: Box::pin(s.map(|e| e.map_err(remote))),
        })
    }
}
