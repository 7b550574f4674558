//! The client listeners: `listen` (TLS when `[tls]` is set) and, beside a
//! TLS one, the optional plaintext listener (`tls.plaintext_listen`). Each
//! accepts, admits or refuses a connection (`limits.max_client_connections`
//! over both, `limits.max_client_connections_per_source` per address), and
//! hands it to a worker, which does the TLS handshake before the session
//! starts: a slow handshake holds its worker's task, never the acceptor.
//!
//! Owns admission and the TLS start of a client connection; what a session
//! does after is `session`'s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{front_door, workers, Proxy};
use crate::protocol::{ErrorCode, ErrorFrame};
use crate::tls::Reloading;
pub use crate::topology::Face;

/// One bound listener.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<Reloading<rustls::ServerConfig>>>,
    pub face: Face,
}

/// Client connections open per source address.
type PerSource = Arc<parking_lot::Mutex<HashMap<IpAddr, u32>>>;

/// The connection limits both listeners share.
pub struct Admission {
    total: Arc<Semaphore>,
    max_total: u32,
    max_per_source: u32,
    per_source: PerSource,
}

/// A connection's place under the limits, given back when it closes.
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    source: Option<(IpAddr, PerSource)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((ip, counts)) = &self.source {
            let mut m = counts.lock();
            if let Some(n) = m.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(ip);
                }
            }
        }
    }
}

impl Admission {
    pub fn new(limits: &crate::config::Limits) -> Admission {
        Admission {
            total: Arc::new(Semaphore::new(limits.max_client_connections as usize)),
            max_total: limits.max_client_connections,
            max_per_source: limits.max_client_connections_per_source,
            per_source: Default::default(),
        }
    }

    /// A place for a connection from `ip`, or why there is none.
    fn admit(&self, ip: IpAddr) -> Result<Admitted, String> {
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            format!(
                "cutover: this proxy already serves {} client connections (limits.max_client_connections); try another node",
                self.max_total
            )
        })?;
        if self.max_per_source == 0 {
            return Ok(Admitted {
                _total: total,
                source: None,
            });
        }
        let mut m = self.per_source.lock();
        let n = m.entry(ip).or_default();
        if *n >= self.max_per_source {
            return Err(format!(
                "cutover: {ip} already has {} client connections to this proxy (limits.max_client_connections_per_source); close some, or pool fewer connections per host",
                self.max_per_source
            ));
        }
        *n += 1;
        Ok(Admitted {
            _total: total,
            source: Some((ip, self.per_source.clone())),
        })
    }
}

pub(super) async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: Listener,
    admission: Arc<Admission>,
    workers: Arc<workers::Workers>,
    stop_accepting: CancellationToken,
    close_all: CancellationToken,
    tasks: TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.cancelled() => return,
            a = listener.tcp.accept() => a,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(5);
        let tls = listener.tls.as_ref().map(|t| t.current());
        let admitted = match admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(message) => {
                proxy
                    .metrics()
                    .client_connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                // Debug, not warn: a flood of connections must not become a
                // flood of log lines (cutover_client_connections_refused_total
                // counts).
                tracing::debug!(%peer, message, "refusing a client");
                if let Some(answer) = proxy.front_door().refuse(sock, tls, message) {
                    tasks.spawn(answer);
                }
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let sock = match sock.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand a client connection to a worker");
                continue;
            }
        };
        let (proxy, stop_accepting, close_all, tasks) = (
            proxy.clone(),
            stop_accepting.clone(),
            close_all.clone(),
            tasks.clone(),
        );
        let face = listener.face;
        workers.hand(workers::Job {
            sock,
            peer,
            serve: Box::new(move |sock, peer| {
                Box::pin(async move {
                    let start = Start {
                        proxy,
                        peer,
                        face,
                        stop_accepting,
                        close_all,
                        tasks,
                    };
                    match tls {
                        None => start.serve(sock).await,
                        Some(config) => {
                            if let Some(sock) = start_tls(&start.proxy, sock, peer, config).await {
                                start.serve(sock).await
                            }
                        }
                    }
                    drop(admitted);
                })
            }),
        });
    }
}

/// What a session needs beside its stream.
struct Start {
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    face: Face,
    stop_accepting: CancellationToken,
    close_all: CancellationToken,
    tasks: TaskTracker,
}

impl Start {
    async fn serve<S: crate::upstream::Stream>(self, sock: S) {
        crate::session::ClientSession::new(
            self.proxy,
            sock,
            self.peer,
            self.face,
            self.stop_accepting,
            self.close_all,
            self.tasks,
        )
        .run()
        .await
    }
}

/// Whether `first`, a client's first byte, cannot start a TLS handshake
/// (a record of type 0x16): a plain CQL client (whatever version byte it
/// tries, DSE's included), or something else that is not TLS.
fn is_cql(first: u8) -> bool {
    first != 0x16
}

/// The TLS handshake with a client, within `limits.handshake_timeout`. A
/// client that speaks plain CQL to this port is told so in a CQL error.
async fn start_tls(
    proxy: &Proxy,
    sock: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let counts = &proxy.tls_counts;
    let timeout = proxy.config().limits.handshake_timeout.0;
    let started = tokio::time::timeout(timeout, async {
        let mut first = [0u8; 1];
        match sock.peek(&mut first).await {
            Ok(1) if is_cql(first[0]) => {
                front_door::answer_and_close(sock, tls_required()).await;
                return Err(None);
            }
            Ok(_) => {}
            Err(e) => return Err(Some(e.to_string())),
        }
        tokio_rustls::TlsAcceptor::from(config)
            .accept(sock)
            .await
            .map_err(|e| Some(e.to_string()))
    });
    match started.await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(None)) => {
            counts.plaintext_on_tls.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "a client spoke plain CQL to the TLS port");
            None
        }
        Ok(Err(Some(e))) => {
            counts.handshake_failures.fetch_add(1, Ordering::Relaxed);
            counts.log_failure(peer, &e);
            None
        }
        Err(_) => {
            counts.handshake_failures.fetch_add(1, Ordering::Relaxed);
            counts.log_failure(peer, "no TLS handshake within limits.handshake_timeout");
            None
        }
    }
}

/// The answer to a plain CQL client on a TLS port.
fn tls_required() -> ErrorFrame {
    ErrorFrame::new(
        ErrorCode::PROTOCOL_ERROR,
        "cutover: this port speaks TLS only; connect with TLS (e.g. cqlsh --ssl, or an SSL context in the driver)",
    )
}
