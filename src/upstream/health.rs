//! A cluster's health as its control connection sees it, and the
//! sessions' connections to it: state kept per cluster, which the proxy's
//! readiness reports and `/metrics` reads.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use crate::upstream::UpstreamConn;

/// A cluster's health: up while its control connection is open and answers.
pub struct ClusterHealth {
    state: Mutex<HealthState>,
}

#[derive(Clone)]
struct HealthState {
    /// None until the control connection's first attempt is over.
    up: Option<bool>,
    since: SystemTime,
    node: Option<std::net::SocketAddr>,
    error: Option<String>,
}

impl Default for ClusterHealth {
    fn default() -> Self {
        ClusterHealth {
            state: Mutex::new(HealthState {
                up: None,
                since: SystemTime::now(),
                node: None,
                error: None,
            }),
        }
    }
}

impl ClusterHealth {
    pub fn set_up(&self, node: std::net::SocketAddr) {
        let mut s = self.state.lock();
        if s.up != Some(true) {
            s.since = SystemTime::now();
        }
        s.up = Some(true);
        s.node = Some(node);
        s.error = None;
    }

    pub fn set_down(&self, error: String) {
        let mut s = self.state.lock();
        if s.up != Some(false) {
            s.since = SystemTime::now();
        }
        s.up = Some(false);
        s.node = None;
        s.error = Some(error);
    }

    pub fn is_up(&self) -> bool {
        self.state.lock().up == Some(true)
    }

    /// Known down (not merely not tried yet).
    pub fn is_down(&self) -> bool {
        self.state.lock().up == Some(false)
    }

    /// How long it has been down, when it is.
    pub fn down_for(&self) -> Option<std::time::Duration> {
        let s = self.state.lock();
        (s.up == Some(false)).then(|| s.since.elapsed().unwrap_or_default())
    }

    pub fn report(&self, name: &str, roles: Vec<String>, primary: bool) -> ClusterReport {
        let s = self.state.lock().clone();
        ClusterReport {
            cluster: name.to_string(),
            roles,
            primary,
            status: match s.up {
                None => "unknown",
                Some(true) => "up",
                Some(false) => "down",
            },
            since: rfc3339(s.since),
            for_seconds: s.since.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
            control_node: s.node.map(|n| n.to_string()),
            error: s.error,
            journal_backlog: 0,
        }
    }
}

/// The sessions' upstream connections to one cluster, for the gauges.
#[derive(Default)]
pub struct ConnectionList {
    conns: Mutex<Vec<Weak<UpstreamConn>>>,
}

impl ConnectionList {
    pub fn add(&self, c: &Arc<UpstreamConn>) {
        let mut l = self.conns.lock();
        l.retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
        l.push(Arc::downgrade(c));
    }

    /// (open connections, stream ids in use by requests).
    pub fn usage(&self) -> (usize, usize) {
        let mut l = self.conns.lock();
        l.retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
        let live: Vec<_> = l.iter().filter_map(Weak::upgrade).collect();
        drop(l);
        (live.len(), live.iter().map(|c| c.in_flight()).sum())
    }
}

#[derive(Serialize)]
pub struct ClusterReport {
    pub cluster: String,
    /// What the cluster is in each shard that names it: `SHARD.origin` or
    /// `SHARD.target`.
    pub roles: Vec<String>,
    /// Answers the default route's reads.
    pub primary: bool,
    /// `up`, `down`, or `unknown` (not tried yet).
    pub status: &'static str,
    /// When the status last changed (RFC 3339, UTC).
    pub since: String,
    pub for_seconds: f64,
    pub control_node: Option<String>,
    pub error: Option<String>,
    /// Journaled async-secondary writes for this cluster not acknowledged
    /// yet (0 without a journal).
    pub journal_backlog: u64,
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
