//! What drivers see in `system.local`, `system.peers` and `system.peers_v2`
//! through the proxy: the proxy instances of `[topology]`, each with a
//! stable host id and its own virtual tokens — never the cluster's nodes.
//!
//! The primary answers the query (so columns, types and every other value
//! are a real server's); this module rewrites the addresses, ids, tokens,
//! data center and rack, and replaces the peer rows with the other proxy
//! instances.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use md5::{Digest, Md5};

use crate::config;
use crate::protocol::response::{self, Rows, RowsMetadata};
use crate::protocol::ColumnType;

/// Which listener a client came through: what it is shown in
/// `system.local` / `system.peers` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `listen`.
    Main,
    /// `tls.plaintext_listen`, beside a TLS `listen`.
    Plaintext,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub addr: SocketAddr,
    pub host_id: [u8; 16],
    pub tokens: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TopologyView {
    pub instances: Vec<Instance>,
    pub index: usize,
    pub datacenter: String,
    pub rack: String,
}

/// Which system table a read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTable {
    Local,
    Peers,
    PeersV2,
}

impl SystemTable {
    pub fn of(keyspace: Option<&str>, table: &str) -> Option<SystemTable> {
        if keyspace != Some("system") {
            return None;
        }
        match table {
            "local" => Some(SystemTable::Local),
            "peers" => Some(SystemTable::Peers),
            "peers_v2" => Some(SystemTable::PeersV2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SystemTable::Local => "a read of system.local",
            SystemTable::Peers => "a read of system.peers",
            SystemTable::PeersV2 => "a read of system.peers_v2",
        }
    }
}

fn host_id(addr: &SocketAddr) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(b"cutover-instance:");
    h.update(addr.to_string().as_bytes());
    let mut id: [u8; 16] = h.finalize().into();
    id[6] = (id[6] & 0x0f) | 0x30;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

impl TopologyView {
    pub fn from_config(t: &config::Topology) -> TopologyView {
        let n = t.instances.len().max(1) as i128;
        let per = t.tokens_per_instance.max(1) as i128;
        let total = n * per;
        let step = (1i128 << 64) / total;
        let instances = t
            .instances
            .iter()
            .enumerate()
            .map(|(i, addr)| Instance {
                addr: *addr,
                host_id: host_id(addr),
                tokens: (0..per)
                    .map(|j| (i64::MIN as i128 + (j * n + i as i128) * step).to_string())
                    .collect(),
            })
            .collect();
        TopologyView {
            instances,
            index: t.index,
            datacenter: t.datacenter.clone(),
            rack: t.rack.clone(),
        }
    }

    /// The same instances (host ids, tokens) reached at `addrs`, in order:
    /// what the clients of a second listener see.
    pub fn at(&self, addrs: &[SocketAddr]) -> TopologyView {
        TopologyView {
            instances: self
                .instances
                .iter()
                .zip(addrs)
                .map(|(i, a)| Instance {
                    addr: *a,
                    ..i.clone()
                })
                .collect(),
            ..self.clone()
        }
    }

    pub fn local(&self) -> &Instance {
        &self.instances[self.index]
    }

    pub fn peers(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != self.index)
            .map(|(_, x)| x)
    }

    /// The value of `column` for `instance`, if topology owns that column.
    fn cell(&self, instance: &Instance, column: &str, typ: &ColumnType) -> Option<Option<Bytes>> {
        let inet = |ip: IpAddr| match ip {
            IpAddr::V4(a) => Bytes::copy_from_slice(&a.octets()),
            IpAddr::V6(a) => Bytes::copy_from_slice(&a.octets()),
        };
        Some(Some(match (column, typ) {
            (
                "rpc_address" | "broadcast_address" | "listen_address" | "peer" | "native_address"
                | "preferred_ip",
                ColumnType::Inet,
            ) => inet(instance.addr.ip()),
            (
                "rpc_port" | "native_port" | "peer_port" | "broadcast_port" | "listen_port"
                | "preferred_port",
                ColumnType::Int,
            ) => Bytes::copy_from_slice(&(instance.addr.port() as i32).to_be_bytes()),
            ("host_id", ColumnType::Uuid) => Bytes::copy_from_slice(&instance.host_id),
            ("data_center", _) => Bytes::from(self.datacenter.clone()),
            ("rack", _) => Bytes::from(self.rack.clone()),
            ("tokens", ColumnType::Set(_)) => {
                let mut b = BytesMut::new();
                b.put_i32(instance.tokens.len() as i32);
                for t in &instance.tokens {
                    b.put_i32(t.len() as i32);
                    b.put_slice(t.as_bytes());
                }
                b.freeze()
            }
            _ => return None,
        }))
    }

    /// Rewrites the primary's answer to a read of `table`. `primary_local`
    /// holds the primary's own `system.local` row (columns by name) to fill
    /// peer columns topology does not own (release and schema versions).
    pub fn rewrite(
        &self,
        table: SystemTable,
        answer: &Rows,
        primary_local: &[(String, Option<Bytes>)],
    ) -> Bytes {
        let meta: &RowsMetadata = &answer.metadata;
        if meta.no_metadata {
            return response::rows(meta, &answer.rows);
        }
        let rows: Vec<Vec<Option<Bytes>>> = match table {
            SystemTable::Local => answer
                .rows
                .iter()
                .map(|row| {
                    meta.columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| {
                            self.cell(self.local(), &c.name, &c.typ)
                                .unwrap_or_else(|| v.clone())
                        })
                        .collect()
                })
                .collect(),
            SystemTable::Peers | SystemTable::PeersV2 => self
                .peers()
                .map(|p| {
                    meta.columns
                        .iter()
                        .map(|c| {
                            self.cell(p, &c.name, &c.typ).unwrap_or_else(|| {
                                primary_local
                                    .iter()
                                    .find(|(n, _)| *n == c.name)
                                    .and_then(|(_, v)| v.clone())
                            })
                        })
                        .collect()
                })
                .collect(),
        };
        let mut meta = meta.clone();
        meta.paging_state = None;
        response::rows(&meta, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::response::{ColumnSpec, ResultBody};

    fn view(n: usize, index: usize) -> TopologyView {
        TopologyView::from_config(&config::Topology {
            instances: (0..n)
                .map(|i| format!("127.0.0.{}:9042", i + 1).parse().unwrap())
                .collect(),
            index,
            tokens_per_instance: 4,
            datacenter: "dc1".into(),
            rack: "r1".into(),
            admin_instances: Vec::new(),
            plaintext_instances: Vec::new(),
        })
    }

    #[test]
    fn instances_get_stable_distinct_ids_and_interleaved_tokens() {
        let a = view(2, 0);
        let b = view(2, 1);
        assert_eq!(
            a.instances[0].host_id, b.instances[0].host_id,
            "same id on every instance"
        );
        assert_ne!(a.instances[0].host_id, a.instances[1].host_id);
        let mut all: Vec<i64> = a
            .instances
            .iter()
            .flat_map(|i| i.tokens.iter().map(|t| t.parse::<i64>().unwrap()))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8, "no token is shared");
        assert_eq!(b.peers().count(), 1);
    }

    #[test]
    fn local_row_is_rewritten_and_peers_are_the_other_instances() {
        let v = view(3, 1);
        let spec = |name: &str, typ| ColumnSpec {
            keyspace: "system".into(),
            table: "local".into(),
            name: name.into(),
            typ,
        };
        let meta = RowsMetadata::new(vec![
            spec("rpc_address", ColumnType::Inet),
            spec("release_version", ColumnType::Varchar),
            spec("tokens", ColumnType::Set(Box::new(ColumnType::Varchar))),
        ]);
        let answer = Rows {
            metadata: meta,
            rows: vec![vec![
                Some(Bytes::from_static(&[10, 0, 0, 9])),
                Some(Bytes::from_static(b"4.1.3")),
                None,
            ]],
        };
        let local = v.rewrite(SystemTable::Local, &answer, &[]);
        let ResultBody::Rows(r) = ResultBody::read(&local, 4).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.rows[0][0].as_deref(),
            Some(&[127, 0, 0, 2][..]),
            "this instance's address"
        );
        assert_eq!(
            r.rows[0][1].as_deref(),
            Some(&b"4.1.3"[..]),
            "the primary's own value"
        );
        assert!(r.rows[0][2].is_some());
        let peers = v.rewrite(
            SystemTable::Peers,
            &answer,
            &[("release_version".into(), Some(Bytes::from_static(b"4.1.3")))],
        );
        let ResultBody::Rows(r) = ResultBody::read(&peers, 4).unwrap() else {
            panic!()
        };
        let addrs: Vec<&[u8]> = r
            .rows
            .iter()
            .map(|row| row[0].as_deref().unwrap())
            .collect();
        assert_eq!(addrs, [&[127, 0, 0, 1][..], &[127, 0, 0, 3][..]]);
        assert_eq!(r.rows[0][1].as_deref(), Some(&b"4.1.3"[..]));
    }
}
