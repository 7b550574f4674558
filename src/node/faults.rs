//! Fault injection and inspection for tests: what the control port changes
//! and reports. Everything here is lock-free or briefly locked; nothing is
//! held across an await.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::frame::Opcode;
use crate::protocol::{consistency, ErrorFrame};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectedError {
    WriteTimeout,
    ReadTimeout,
    Unavailable,
    Overloaded,
    ServerError,
}

impl InjectedError {
    pub fn frame(self) -> ErrorFrame {
        match self {
            InjectedError::WriteTimeout => ErrorFrame::write_timeout(
                consistency::ONE,
                "SIMPLE",
                "Operation timed out - received only 0 responses. (injected by the node's control port)",
            ),
            InjectedError::ReadTimeout => ErrorFrame::read_timeout(
                consistency::ONE,
                "Operation timed out - received only 0 responses. (injected by the node's control port)",
            ),
            InjectedError::Unavailable => ErrorFrame::unavailable(
                consistency::ONE,
                "Cannot achieve consistency level ONE (injected by the node's control port)",
            ),
            InjectedError::Overloaded => ErrorFrame::new(
                crate::protocol::ErrorCode::OVERLOADED,
                "Server is in overloaded state. Cannot accept more requests at this point (injected by the node's control port)",
            ),
            InjectedError::ServerError => ErrorFrame::server("Injected server error (from the node's control port)"),
        }
    }

    /// Which statements the error applies to: a write timeout only makes
    /// sense for writes, a read timeout only for reads.
    pub fn applies_to(self, kind: StatementKind) -> bool {
        match self {
            InjectedError::WriteTimeout => kind == StatementKind::Write,
            InjectedError::ReadTimeout => kind == StatementKind::Read,
            _ => kind != StatementKind::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Read,
    Write,
    /// DDL, USE, PREPARE: never failed by injection.
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorRule {
    pub error: InjectedError,
    /// Share of matching requests that fail, 0.0 to 1.0.
    #[serde(default = "one")]
    pub share: f64,
    /// Only requests with this opcode (QUERY, EXECUTE, BATCH).
    #[serde(default)]
    pub opcode: Option<String>,
    /// Only statements on this keyspace.
    #[serde(default)]
    pub keyspace: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// Faults in force. System keyspaces are never affected, so drivers keep
/// their control connections.
#[derive(Default)]
pub struct Faults {
    pub latency_us: AtomicU64,
    pub error: Mutex<Option<ErrorRule>>,
    pub hang: AtomicBool,
    pub release: tokio::sync::Notify,
}

impl Faults {
    pub fn clear(&self) {
        self.latency_us.store(0, Ordering::Relaxed);
        *self.error.lock() = None;
        self.release_all();
    }

    pub fn release_all(&self) {
        self.hang.store(false, Ordering::SeqCst);
        self.release.notify_waiters();
    }

    pub fn error_for(
        &self,
        op: Opcode,
        keyspace: Option<&str>,
        kind: StatementKind,
    ) -> Option<ErrorFrame> {
        let guard = self.error.lock();
        let rule = guard.as_ref()?;
        if !rule.error.applies_to(kind) {
            return None;
        }
        if rule
            .opcode
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(op.name()))
        {
            return None;
        }
        if rule
            .keyspace
            .as_deref()
            .is_some_and(|k| Some(k) != keyspace)
        {
            return None;
        }
        if rule.share < 1.0 && rand::random::<f64>() >= rule.share {
            return None;
        }
        Some(rule.error.frame())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: String,
    pub protocol_version: u8,
    pub startup: BTreeMap<String, String>,
    pub compression: Option<String>,
    pub user: Option<String>,
}

/// Counters the control port reports.
#[derive(Default)]
pub struct Stats {
    requests: [AtomicU64; 17],
    errors: Mutex<BTreeMap<String, u64>>,
    pub connections: Mutex<BTreeMap<u64, ConnectionInfo>>,
    pub accepted: AtomicU64,
    /// Count writes (INSERT, UPDATE, DELETE, BATCH) by keyspace: off by
    /// default, as it classifies every request.
    pub count_writes: std::sync::atomic::AtomicBool,
    writes: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Serialize)]
pub struct StatsReport {
    pub requests: BTreeMap<String, u64>,
    /// Writes by keyspace, while `count_writes` is on.
    pub writes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub connections: Vec<ConnectionInfo>,
    pub connections_accepted: u64,
}

impl Stats {
    pub fn count_request(&self, opcode: u8) {
        if let Some(c) = self.requests.get(opcode as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_write(&self, keyspace: &str) {
        *self.writes.lock().entry(keyspace.to_string()).or_default() += 1;
    }

    /// Writes received for `keyspace` while `count_writes` was on.
    pub fn writes_to(&self, keyspace: &str) -> u64 {
        self.writes.lock().get(keyspace).copied().unwrap_or(0)
    }

    pub fn count_error(&self, e: &ErrorFrame) {
        *self
            .errors
            .lock()
            .entry(format!("{:#06x}", e.code.0))
            .or_default() += 1;
    }

    pub fn report(&self) -> StatsReport {
        let mut requests = BTreeMap::new();
        for (i, c) in self.requests.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let name = Opcode::from_u8(i as u8)
                    .map(|o| o.name().to_string())
                    .unwrap_or_else(|| format!("{i:#04x}"));
                requests.insert(name, n);
            }
        }
        StatsReport {
            requests,
            writes: self.writes.lock().clone(),
            errors: self.errors.lock().clone(),
            connections: self.connections.lock().values().cloned().collect(),
            connections_accepted: self.accepted.load(Ordering::Relaxed),
        }
    }

    pub fn reset(&self) {
        for c in &self.requests {
            c.store(0, Ordering::Relaxed);
        }
        self.errors.lock().clear();
        self.writes.lock().clear();
    }
}
