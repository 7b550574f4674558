//! The threads client connections are served on. Each worker is a
//! single-threaded tokio runtime that owns the connections handed to it:
//! a session, its requests, its upstream connections and their reader and
//! writer tasks all run on that one thread, so a request costs no wake-up
//! of another thread (on the work-stealing runtime every leg woke the other
//! worker: a futex call and a context switch, most of the proxy's CPU under
//! load). Connections are dealt out in turn; what sessions share (the
//! routing state, the prepared map, metrics) is shared across threads as
//! before.
//!
//! Owns the worker threads and the hand-off of accepted sockets; it must
//! not know what a session does.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// What a worker is handed: an accepted socket (taken off the accepting
/// runtime, so that its readiness is this worker's), and what to run on it.
pub struct Job {
    pub sock: std::net::TcpStream,
    pub peer: SocketAddr,
    pub serve: Box<dyn FnOnce(tokio::net::TcpStream, SocketAddr) -> Session + Send>,
}

pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The workers; dropping it lets each finish its connections and stop.
pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Workers {
    /// `n` worker threads (0: one per core); `tasks` tracks every session.
    pub fn start(n: usize, tasks: TaskTracker) -> std::io::Result<Workers> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let tasks = tasks.clone();
            std::thread::Builder::new()
                .name(format!("cutover-worker-{i}"))
                .spawn(move || rt.block_on(work(rx, tasks)))?;
            senders.push(tx);
        }
        Ok(Workers {
            senders,
            next: AtomicUsize::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Hands `job` to the next worker in turn.
    pub fn hand(&self, job: Job) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[i].send(job).is_err() {
            tracing::error!(
                worker = i,
                "a worker thread is gone; a client connection is dropped"
            );
        }
    }
}

/// A worker: runs the sessions it is handed until the acceptor lets go,
/// then until its last session has ended.
async fn work(mut jobs: mpsc::UnboundedReceiver<Job>, tasks: TaskTracker) {
    let mine = TaskTracker::new();
    while let Some(job) = jobs.recv().await {
        let sock = match tokio::net::TcpStream::from_std(job.sock) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(peer = %job.peer, error = %e, "cannot take over a client connection");
                continue;
            }
        };
        let session = (job.serve)(sock, job.peer);
        tokio::spawn(mine.track_future(tasks.track_future(session)));
    }
    mine.close();
    mine.wait().await;
}
