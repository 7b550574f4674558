//! Semantic checks of a parsed config: every problem found, each a
//! sentence an operator can act on, in file order.

use super::{Config, Problem, TenantKey, WriteMode};

impl Config {
    /// Every semantic problem, in file order.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let l = &self.limits;
        for (name, v) in [
            (
                "limits.max_client_connections",
                l.max_client_connections as u64,
            ),
            (
                "limits.max_in_flight_per_connection",
                l.max_in_flight_per_connection as u64,
            ),
            (
                "limits.prepared_cache_entries",
                l.prepared_cache_entries as u64,
            ),
            (
                "limits.max_shadow_reads_in_flight",
                l.max_shadow_reads_in_flight as u64,
            ),
        ] {
            if v == 0 {
                p.push(format!("`{name}` must be at least 1").into());
            }
        }
        if self.worker_threads > 1024 {
            p.push("`worker_threads` cannot exceed 1024 (0 means one per core)".into());
        }
        if l.max_in_flight_per_connection > 32_768 {
            p.push("`limits.max_in_flight_per_connection` cannot exceed 32768 (the protocol's stream ids)".into());
        }
        if l.max_frame_bytes.0 < 1024 || l.max_frame_bytes.0 > 256 * 1024 * 1024 {
            p.push(
                "`limits.max_frame_bytes` must be between 1KiB and 256MiB (the protocol's ceiling)"
                    .into(),
            );
        }
        if l.max_frame_bytes_before_auth.0 > l.max_frame_bytes.0 {
            p.push(
                "`limits.max_frame_bytes_before_auth` cannot exceed `limits.max_frame_bytes`"
                    .into(),
            );
        }
        if l.max_partial_frame_bytes.0 < l.max_frame_bytes.0 {
            p.push("`limits.max_partial_frame_bytes` cannot be less than `limits.max_frame_bytes` (no frame of the largest size could ever be received)".into());
        }
        if l.max_in_flight_bytes.0 < l.max_frame_bytes.0 {
            p.push("`limits.max_in_flight_bytes` cannot be less than `limits.max_frame_bytes` (a request of the largest size would always be refused)".into());
        }
        if l.max_queued_bytes_per_connection.0 < 1024 {
            p.push("`limits.max_queued_bytes_per_connection` must be at least 1KiB (room for a heartbeat while a connection waits)".into());
        }
        for (name, d) in [
            ("limits.handshake_timeout", l.handshake_timeout),
            ("limits.frame_timeout", l.frame_timeout),
        ] {
            if d.0.is_zero() {
                p.push(format!("`{name}` must be more than 0").into());
            }
        }
        let t = &self.topology;
        if t.index >= t.instances.len() {
            p.push(
                format!(
                    "`topology.index` is {} but `topology.instances` lists {} instance(s)",
                    t.index,
                    t.instances.len()
                )
                .into(),
            );
        }
        if !t.admin_instances.is_empty() && t.admin_instances.len() != t.instances.len() {
            p.push(format!(
                "`topology.admin_instances` lists {} address(es) but `topology.instances` lists {}: one admin address per instance, in the same order",
                t.admin_instances.len(),
                t.instances.len()
            ).into());
        }
        if !(1..=256).contains(&t.tokens_per_instance) {
            p.push("`topology.tokens_per_instance` must be between 1 and 256".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for i in &t.instances {
            if !seen.insert(i) {
                p.push(format!("`topology.instances` lists {i} twice").into());
            }
        }
        if self.clusters.is_empty() {
            p.push("no `[clusters.*]`: at least an origin cluster is needed (`[clusters.origin] contact_points = [\"host:9042\"]`)".into());
        }
        for (name, c) in &self.clusters {
            if c.contact_points.is_empty() {
                p.push(format!("`clusters.{name}.contact_points` is empty").into());
            }
            for cp in &c.contact_points {
                if let Err(e) = check_host_port(cp) {
                    p.push(format!("`clusters.{name}.contact_points`: {e}").into());
                }
            }
            if c.password.is_some() && c.username.is_none() {
                p.push(
                    format!(
                        "`clusters.{name}.password` is set but `clusters.{name}.username` is not"
                    )
                    .into(),
                );
            }
            for (key, d) in [
                ("connect_timeout", c.connect_timeout),
                ("request_timeout", c.request_timeout),
                ("heartbeat_interval", c.heartbeat_interval),
            ] {
                if d.0.is_zero() {
                    p.push(format!("`clusters.{name}.{key}` must be longer than 0").into());
                }
            }
        }
        for (name, s) in &self.shards {
            for (role, cluster) in [("origin", &s.origin), ("target", &s.target)] {
                if !self.clusters.contains_key(cluster) {
                    p.push(format!("`shards.{name}.{role}` names cluster \"{cluster}\", which is not configured").into());
                }
            }
            if s.origin == s.target {
                p.push(
                    format!(
                        "`shards.{name}`: origin and target are the same cluster \"{}\"",
                        s.origin
                    )
                    .into(),
                );
            }
        }
        if !self.shards.contains_key(&self.route.shard) {
            let known: Vec<&str> = self.shards.keys().map(String::as_str).collect();
            p.push(format!(
                "`route.shard` is \"{}\" but the configured shards are [{}] (a shard needs clusters named in `[shards.NAME]`, or clusters named origin and target)",
                self.route.shard,
                known.join(", ")
            ).into());
        }
        let j = &self.journal;
        if j.segment_bytes.0 < 4096 || j.segment_bytes.0 > 1024 * 1024 * 1024 {
            p.push(Problem::at(
                "journal.segment_bytes",
                "`journal.segment_bytes` must be between 4KiB and 1GiB",
            ));
        }
        if j.max_bytes.0 < 2 * j.segment_bytes.0 {
            p.push(Problem::at(
                "journal.max_bytes",
                format!(
                    "`journal.max_bytes` ({}) must be at least twice `journal.segment_bytes` ({}): a segment is deleted only once all its records are acknowledged",
                    j.max_bytes.0, j.segment_bytes.0
                ),
            ));
        }
        if j.group_commit_interval.0.is_zero()
            || j.group_commit_interval.0 > std::time::Duration::from_secs(1)
        {
            p.push(Problem::at(
                "journal.group_commit_interval",
                "`journal.group_commit_interval` must be more than 0 and at most 1s (a write waits for it)",
            ));
        }
        if j.replay_concurrency == 0 || j.replay_concurrency > 4096 {
            p.push(Problem::at(
                "journal.replay_concurrency",
                "`journal.replay_concurrency` must be between 1 and 4096",
            ));
        }
        if j.max_secondary_in_flight == 0 {
            p.push(Problem::at(
                "journal.max_secondary_in_flight",
                "`journal.max_secondary_in_flight` must be at least 1",
            ));
        }
        if self.route.write_mode == WriteMode::AsyncSecondary && !self.writes.add_timestamps {
            p.push(Problem::at(
                "route.write_mode",
                "`route.write_mode = \"async-secondary\"` needs `writes.add_timestamps = true`: a write is journaled only with a fixed write time (otherwise it stays synchronous, and every write would)",
            ));
        }
        if let Some(a) = self.admin {
            if !a.ip().is_loopback()
                && self
                    .admin_token
                    .as_ref()
                    .is_none_or(|t| t.expose().is_empty())
            {
                p.push(format!("`admin` is {a}, not a loopback address: set `admin_token` (or CUTOVER_ADMIN_TOKEN) so the admin API requires it").into());
            }
        }
        let m = &self.metrics;
        if m.tenants.len() > m.max_tenants {
            p.push(format!(
                "`metrics.tenants` lists {} tenants but `metrics.max_tenants` is {}: each listed tenant costs memory for its own latency series",
                m.tenants.len(),
                m.max_tenants
            ).into());
        }
        if m.window.0 < std::time::Duration::from_secs(1) {
            p.push("`metrics.window` must be at least 1s".into());
        }
        if let Err(e) = super::log_filter(&self.log.filter) {
            p.push(
                format!(
                    "`log.filter` \"{}\" is not a valid filter: {e}",
                    self.log.filter
                )
                .into(),
            );
        }
        match &self.tenants.key {
            TenantKey::Named(n) if n == "none" => {}
            TenantKey::Named(n) => p.push(format!(
                "`tenants.key` is \"{n}\": use \"none\", {{ keyspace = \"REGEX\" }} or {{ column = \"NAME\" }}"
            ).into()),
            TenantKey::Keyspace { keyspace } => {
                if let Err(e) = regex::Regex::new(keyspace) {
                    p.push(format!("`tenants.key.keyspace` is not a valid regex: {e}").into());
                }
            }
            TenantKey::Column { column } => {
                if column.is_empty() {
                    p.push(format!(
                        "`tenants.key.column` is \"{column}\": give the name of the column that holds the tenant, as the table defines it (e.g. \"tenant_id\")"
                    ).into());
                }
            }
        }
        if let Some(t) = &self.tenants.table {
            if !self.clusters.contains_key(&t.cluster) {
                p.push(
                    format!(
                        "`tenants.table.cluster` is \"{}\", which is not configured",
                        t.cluster
                    )
                    .into(),
                );
            }
            let parts: Vec<&str> = t.name.split('.').collect();
            if parts.len() != 2 || parts.iter().any(|s| s.is_empty()) {
                p.push(
                    format!(
                        "`tenants.table.name` is \"{}\": give it as keyspace.table",
                        t.name
                    )
                    .into(),
                );
            }
            if t.poll_every.0 < std::time::Duration::from_millis(100) {
                p.push("`tenants.table.poll_every` must be at least 100ms".into());
            }
        }
        let mut all = self.tenants.entries.clone();
        all.extend(self.tenants.file_entries.iter().cloned());
        p.extend(self.entry_problems(&all));
        if self.tenants.table.is_some() && self.tenants.key == TenantKey::default() {
            p.push("`tenants.table` is set but `tenants.key` is \"none\": no request would ever have a tenant".into());
        }
        if !all.is_empty() && self.tenants.key == TenantKey::default() {
            p.push("`tenants.entries` are listed but `tenants.key` is \"none\": no request would ever have a tenant; set `tenants.key = { keyspace = \"REGEX\" }` or `{ column = \"NAME\" }`".into());
        }
        if self.shutdown.grace_period.0.is_zero() {
            p.push("`shutdown.grace_period` must be longer than 0".into());
        }
        p.extend(self.tls_shape_problems());
        p
    }

    /// The TLS sections' settings that do not fit together.
    fn tls_shape_problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let t = &self.topology;
        match self.tls.as_ref().and_then(|t| t.plaintext_listen) {
            Some(plain) => {
                if plain == self.listen {
                    p.push(format!("`tls.plaintext_listen` is {plain}, the same as `listen`: the plaintext listener needs an address of its own").into());
                }
                if t.instances.len() > 1 && t.plaintext_instances.len() != t.instances.len() {
                    p.push(format!(
                        "`topology.plaintext_instances` lists {} address(es) but `topology.instances` lists {}: with `tls.plaintext_listen`, list each instance's plaintext listener in the same order, so that a plaintext client is never sent to a TLS port",
                        t.plaintext_instances.len(),
                        t.instances.len()
                    ).into());
                }
            }
            None => {
                if !t.plaintext_instances.is_empty() {
                    p.push("`topology.plaintext_instances` is set but `tls.plaintext_listen` is not: there is no plaintext listener".into());
                }
            }
        }
        if self
            .admin_tls
            .as_ref()
            .is_some_and(|a| a.plaintext_listen.is_some())
        {
            p.push("`admin_tls.plaintext_listen` is not a setting: the admin API has one listener (`admin`)".into());
        }
        if self.tls.as_ref().is_some_and(|t| t.ca_file.is_some()) {
            p.push("`tls.ca_file` is not a setting of the client listener: `tls.client_ca_file` names the CAs clients' certificates chain to".into());
        }
        if self.admin_tls.is_some() && self.admin.is_none() {
            p.push(
                "`admin_tls` is set but `admin` is not: there is no admin API to serve over TLS"
                    .into(),
            );
        }
        for (name, c) in &self.clusters {
            let Some(t) = &c.tls else { continue };
            if t.cert_file.is_some() != t.key_file.is_some() {
                p.push(format!("`clusters.{name}.tls.cert_file` and `clusters.{name}.tls.key_file` go together: set both for a client certificate, or neither").into());
            }
            if t.insecure_skip_verify && (t.ca_file.is_some() || t.server_name.is_some()) {
                p.push(format!("`clusters.{name}.tls.insecure_skip_verify = true` verifies nothing, so `ca_file` and `server_name` would not be used: remove one or the other").into());
            }
            if let Some(n) = &t.server_name {
                if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                    p.push(format!("`clusters.{name}.tls.server_name` \"{n}\" is not a DNS name or an IP address").into());
                }
            }
        }
        p
    }

    /// What reading the TLS sections' certificate and key files finds
    /// wrong (paths already relative to the config file's folder).
    pub fn tls_problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, t) in [("tls", &self.tls), ("admin_tls", &self.admin_tls)] {
            if let Some(t) = t {
                if let Err(e) = crate::tls::server_config(t) {
                    p.push(Problem::at(key, format!("`{key}`: {e}")));
                }
            }
        }
        for (name, c) in &self.clusters {
            if let Some(t) = &c.tls {
                if let Err(e) = crate::tls::client_config(t) {
                    let key = format!("clusters.{name}.tls");
                    p.push(Problem::at(key.clone(), format!("`{key}`: {e}")));
                }
            }
        }
        p
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{s}\" needs a port (host:port)"))?;
    if host.is_empty() {
        return Err(format!("\"{s}\" has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("\"{s}\" has an invalid port \"{port}\"")),
    }
}
