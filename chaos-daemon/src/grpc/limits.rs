//! The bounds on what callers may hold open, the daemon's figures in one place. Every listener
//! (the Unix socket, `--tcp`, `--insecure-tcp`) gets its own set, so a flood on a TCP port
//! never takes the local socket's share. Once a call is on a connection nothing here makes a
//! stop wait or fail (docs/adr/0011): `EmergencyStop` and `StopExperiment` bypass the in-flight
//! limit, and no limit queues. A listener at its connection cap refuses every new connection,
//! a stop's too: the Unix socket (root's alone) is then still open to it.
//!
//! | what | figure | past it |
//! |---|---|---|
//! | connections per listener | [`MAX_CONNECTIONS`] = 128 | closed at accept, never queued |
//! | concurrent streams per connection (HTTP/2) | [`MAX_STREAMS_PER_CONNECTION`] = 64 | the client waits for a stream (HTTP/2 flow) |
//! | requests in their handler per listener, stops excepted | [`MAX_IN_FLIGHT`] = 128 | `RESOURCE_EXHAUSTED` at once, never queued |
//! | a unary handler's time | [`UNARY_TIMEOUT`] = 30 s | `DEADLINE_EXCEEDED` |
//! | `StartExperiment`'s time (its baseline may last 1 h) | [`START_TIMEOUT`] = 1 h 30 s | `DEADLINE_EXCEEDED`; an armed start still gets its guards |
//! | HTTP/2 keepalive | a ping every [`KEEPALIVE_INTERVAL`] = 20 s, answered within [`KEEPALIVE_TIMEOUT`] = 10 s | the connection is dropped, its streams end |
//! | TLS handshake (`--tcp`) | [`TLS_HANDSHAKE_TIMEOUT`] = 10 s | the connection is dropped |
//! | `WatchExperiment` streams per caller | [`MAX_WATCHERS_PER_CALLER`] = 64 | `RESOURCE_EXHAUSTED` naming the cap |
//! | `WatchExperiment` streams in all | [`MAX_WATCHERS`] = 256 | `RESOURCE_EXHAUSTED` naming the cap |
//!
//! Why these: a caller is chaos-ctl (one or two streams) or a controller that multiplexes its
//! watchers on one connection, so a connection's streams match a caller's watchers. Three
//! listeners at 128 connections stay under the common soft `RLIMIT_NOFILE` of 1024 with room
//! for the store, the BPF maps and links and the cgroup files the daemon itself needs; 128
//! handlers per listener stay under tokio's 512 blocking threads, which the store's readers
//! use. A watch stream's timeout covers its setup only: once it streams, the watcher caps and
//! the keepalive bound it. A caller is its identity ([`super::auth::Caller::identity`]): a
//! uid, a certificate's CN, or every plain-TCP loopback observer together.
//!
//! Watchers are served from one shared sample of the lifecycle ([`super::watch`]), taken every
//! [`WATCH_TICK`] while anyone watches.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use chaos_api::proto::chaos_daemon_server::SERVICE_NAME;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{
    Status,
    body::Body,
    codegen::http,
    transport::{Server, server::Connected},
};
use tower::{
    Layer, Service,
    layer::util::{Identity, Stack},
};

/// Connections one listener keeps open.
pub const MAX_CONNECTIONS: usize = 128;
/// HTTP/2 streams (calls) one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Requests one listener runs at once (their handlers; a watch's stream once set up is not
/// counted), `EmergencyStop` and `StopExperiment` not counted.
pub const MAX_IN_FLIGHT: usize = 128;
/// How long a unary call's handler may take.
pub const UNARY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `StartExperiment` may take: its baseline (at most 1 h, chaos-api's bound on
/// `safety_checks.baseline` and an experiment's `guards.baseline`) and [`UNARY_TIMEOUT`].
pub const START_TIMEOUT: Duration = Duration::from_secs(3600 + UNARY_TIMEOUT.as_secs());
/// How often an HTTP/2 ping checks that the peer is alive.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long the peer has to answer the ping before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `WatchExperiment` streams one caller may have open.
pub const MAX_WATCHERS_PER_CALLER: usize = 64;
/// `WatchExperiment` streams the daemon serves at once.
pub const MAX_WATCHERS: usize = 256;
/// How often the watched experiments are sampled, and the shortest interval a watcher gets.
pub const WATCH_TICK: Duration = Duration::from_millis(50);

/// The server for one listener, with the limits above.
pub fn limited(server: Server, listener: &str) -> Server<Stack<LimitsLayer, Identity>> {
    server
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(LimitsLayer::new(
            listener,
            MAX_IN_FLIGHT,
            UNARY_TIMEOUT,
            START_TIMEOUT,
        ))
}

/// How a method is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `EmergencyStop`, `StopExperiment`: never refused for load.
    Disarm,
    /// `StartExperiment`: [`START_TIMEOUT`].
    Start,
    /// Everything else.
    Other,
}

impl Class {
    fn of(path: &str) -> Self {
        let method = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(SERVICE_NAME))
            .and_then(|p| p.strip_prefix('/'));
        match method {
            Some("EmergencyStop" | "StopExperiment") => Self::Disarm,
            Some("StartExperiment") => Self::Start,
            _ => Self::Other,
        }
    }
}

/// Sheds requests past a listener's in-flight limit and times handlers out.
#[derive(Clone)]
pub struct LimitsLayer {
    listener: Arc<str>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    unary_timeout: Duration,
    start_timeout: Duration,
}

impl LimitsLayer {
    /// `max_in_flight` handlers at once on `listener` (named in refusals), each within
    /// `unary_timeout` (`StartExperiment`: `start_timeout`).
    pub fn new(
        listener: &str,
        max_in_flight: usize,
        unary_timeout: Duration,
        start_timeout: Duration,
    ) -> Self {
        Self {
            listener: listener.into(),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            unary_timeout,
            start_timeout,
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service [`LimitsLayer`] makes.
#[derive(Clone)]
pub struct Limits<S> {
    inner: S,
    limits: LimitsLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Limits<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let class = Class::of(req.uri().path());
        let l = &self.limits;
        // A stop is never refused for load: nothing waits or fails in front of a disarm.
        let permit: Option<OwnedSemaphorePermit> = match class {
            Class::Disarm => None,
            _ => match l.in_flight.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let refused = Status::resource_exhausted(format!(
                        "the daemon is already answering {} requests on {}, its limit: retry \
                         shortly (stopping and the emergency stop are never refused)",
                        l.max_in_flight, l.listener
                    ));
                    return Box::pin(std::future::ready(Ok(refused.into_http())));
                }
            },
        };
        let timeout = match class {
            Class::Start => l.start_timeout,
            _ => l.unary_timeout,
        };
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        // The clone is ready only once polled; the instance that was polled ready serves.
        let ready = self.inner.clone();
        let answer = std::mem::replace(&mut self.inner, ready).call(req);
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, answer).await {
                Ok(r) => r,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "{method} took longer than {}, the daemon's limit for it",
                    humantime::format_duration(timeout)
                ))
                .into_http()),
            }
        })
    }
}

/// `incoming` with at most `max` connections open at once: past it a new connection is
/// closed at accept (not queued), and logged (the first refusals and then at each power of two).
pub fn capped<S, IO, E>(
    incoming: S,
    max: usize,
    listener: String,
) -> impl Stream<Item = Result<Capped<IO>, E>>
where
    S: Stream<Item = Result<IO, E>>,
{
    let open = Arc::new(Semaphore::new(max));
    let refused = AtomicU64::new(0);
    incoming.filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(io) => match open.clone().try_acquire_owned() {
            Ok(permit) => Some(Ok(Capped {
                io,
                _permit: permit,
            })),
            Err(_) => {
                let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        listener,
                        limit = max,
                        refused = n,
                        "connection closed: the listener has its most connections open"
                    );
                }
                None
            }
        },
    })
}

/// A connection that holds its listener's slot until it is dropped.
pub struct Capped<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
}

impl<IO: Connected> Connected for Capped<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Capped<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that answers after `delay`.
    #[derive(Clone)]
    struct Slow(Duration);

    impl Service<http::Request<Body>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(Body::default()))
            })
        }
    }

    fn request(method: &str) -> http::Request<Body> {
        http::Request::builder()
            .uri(format!("/{SERVICE_NAME}/{method}"))
            .body(Body::default())
            .unwrap()
    }

    /// The gRPC status of an answer: its code and message (`Ok` when the handler answered).
    fn status(r: &http::Response<Body>) -> (tonic::Code, String) {
        match Status::from_header_map(r.headers()) {
            Some(s) => (s.code(), s.message().to_owned()),
            None => (tonic::Code::Ok, String::new()),
        }
    }

    #[tokio::test]
    async fn past_the_in_flight_limit_requests_are_refused_at_once_but_stops_pass() {
        let layer = LimitsLayer::new(
            "the unix socket",
            2,
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        let mut svc = layer.layer(Slow(Duration::from_millis(300)));
        let busy = [
            svc.call(request("GetStatus")),
            svc.call(request("GetReport")),
        ];
        let t = std::time::Instant::now();
        let refused = svc.call(request("GetStatus")).await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            status(&refused),
            (
                tonic::Code::ResourceExhausted,
                "the daemon is already answering 2 requests on the unix socket, its limit: \
                 retry shortly (stopping and the emergency stop are never refused)"
                    .to_owned()
            )
        );
        for stop in ["EmergencyStop", "StopExperiment"] {
            let answered = svc.call(request(stop)).await.unwrap();
            assert_eq!(status(&answered).0, tonic::Code::Ok, "{stop}");
        }
        for r in futures_util::future::join_all(busy).await {
            assert_eq!(status(&r.unwrap()).0, tonic::Code::Ok);
        }
        // The slots are back.
        let again = svc.call(request("GetStatus")).await.unwrap();
        assert_eq!(status(&again).0, tonic::Code::Ok);
    }

    #[tokio::test]
    async fn handlers_are_timed_out_start_by_its_own_bound() {
        let layer = LimitsLayer::new(
            "tcp 127.0.0.1:1",
            8,
            Duration::from_millis(50),
            Duration::from_millis(500),
        );
        let mut svc = layer.layer(Slow(Duration::from_millis(200)));
        let timed_out = svc.call(request("GetReport")).await.unwrap();
        assert_eq!(
            status(&timed_out),
            (
                tonic::Code::DeadlineExceeded,
                "GetReport took longer than 50ms, the daemon's limit for it".to_owned()
            )
        );
        let started = svc.call(request("StartExperiment")).await.unwrap();
        assert_eq!(status(&started).0, tonic::Code::Ok);
    }

    #[tokio::test]
    async fn past_the_connection_cap_new_connections_are_closed_until_one_ends() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let accepted = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut capped = std::pin::pin!(capped(accepted, 2, "test".to_owned()));
        for io in 0..3 {
            tx.send(Ok::<_, io::Error>(io)).unwrap();
        }
        let first = capped.next().await.unwrap().unwrap();
        let second = capped.next().await.unwrap().unwrap();
        assert_eq!((first.io, second.io), (0, 1));
        // 2 arrives while both slots are held: closed, nothing comes.
        let none = tokio::time::timeout(Duration::from_millis(50), capped.next()).await;
        assert!(none.is_err(), "a third connection was let in");
        drop(first);
        tx.send(Ok(3)).unwrap();
        assert_eq!(capped.next().await.unwrap().unwrap().io, 3);
    }
}
