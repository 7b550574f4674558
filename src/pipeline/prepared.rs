//! The proxy-wide prepared-statement map: one id per (keyspace, text), the
//! one Cassandra itself would compute, so it is the same on every instance,
//! after restarts and in every phase; and per cluster, that cluster's own id.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::cql::{Classification, TableKey};
use crate::protocol::ColumnType;

use crate::routing::keyed::PreparedKeys;
use crate::routing::ClusterId;

pub struct PreparedEntry {
    /// The text the client prepared (its id is computed from this).
    pub text: String,
    /// The text the clusters prepare: server-side function calls replaced by
    /// hidden `?` markers when `writes.replace_server_functions` is on.
    pub cluster_text: String,
    /// Each hidden marker's index among the clusters' markers, and the
    /// function whose value the proxy binds there on every EXECUTE.
    pub hidden: Vec<(usize, String)>,
    pub keyspace: Option<String>,
    pub classification: Arc<Classification>,
    /// With tenants keyed by a column: its markers as the PREPARED
    /// metadata confirmed them, and each marker's type.
    pub keys: OnceLock<PreparedKeys>,
    /// Each cluster's own id.
    ids: RwLock<HashMap<ClusterId, Bytes>>,
}

impl PreparedEntry {
    /// Its tenant keys and marker types: as the PREPARED metadata confirmed
    /// them, or as the text shows them (types unknown) before that.
    pub fn tenant_keys(&self) -> (&[TableKey], &[Option<ColumnType>]) {
        match self.keys.get() {
            Some(k) => (&k.keys, &k.types),
            None => (&self.classification.tenant_keys, &[]),
        }
    }

    pub fn id_on(&self, side: ClusterId) -> Option<Bytes> {
        self.ids.read().get(&side).cloned()
    }

    pub fn set_id(&self, side: ClusterId, id: Bytes) {
        self.ids.write().insert(side, id);
    }
}

pub struct PreparedMap {
    entries: RwLock<HashMap<Bytes, Arc<PreparedEntry>>>,
    capacity: usize,
}

impl PreparedMap {
    pub fn new(capacity: usize) -> PreparedMap {
        PreparedMap {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The id clients see for `text` prepared in `keyspace`.
    pub fn client_id(keyspace: Option<&str>, text: &str) -> Bytes {
        Bytes::copy_from_slice(&crate::protocol::prepared_id(keyspace, text))
    }

    pub fn get(&self, id: &[u8]) -> Option<Arc<PreparedEntry>> {
        self.entries.read().get(id).cloned()
    }

    /// Inserts (or returns the existing) entry for `id`. When the map is
    /// full an arbitrary entry is evicted; a client that EXECUTEs an evicted
    /// id gets UNPREPARED with its own id and prepares again.
    pub fn insert(
        &self,
        id: Bytes,
        text: &str,
        keyspace: Option<&str>,
        classification: Arc<Classification>,
        cluster_text: String,
        hidden: Vec<(usize, String)>,
    ) -> Arc<PreparedEntry> {
        if let Some(e) = self.get(&id) {
            return e;
        }
        let mut entries = self.entries.write();
        if entries.len() >= self.capacity {
            if let Some(k) = entries.keys().next().cloned() {
                entries.remove(&k);
            }
        }
        entries
            .entry(id)
            .or_insert_with(|| {
                Arc::new(PreparedEntry {
                    text: text.to_string(),
                    cluster_text,
                    hidden,
                    keyspace: keyspace.map(str::to_string),
                    classification,
                    keys: OnceLock::new(),
                    ids: RwLock::new(HashMap::new()),
                })
            })
            .clone()
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
