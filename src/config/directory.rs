//! The directory file: tenant entries the admin API manages, kept apart
//! from the config file so operators' edits and the API's never collide.
//! It is the single source of truth for those entries: a change is written
//! here (atomically: a temporary file renamed over it) before it takes
//! effect, so a reload never undoes it.
//!
//! ```toml
//! [[entries]]
//! tenant = "wayne"
//! status = "read-only"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Config, Problem, TenantEntry};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    entries: Vec<TenantEntry>,
}

/// The file's entries; a file that does not exist yet has none.
pub fn read_directory(path: &Path) -> Result<Vec<TenantEntry>, Vec<Problem>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(vec![Problem::at(
                "tenants.directory_file",
                format!("cannot read the directory file {}: {e}", path.display()),
            )])
        }
    };
    toml::from_str::<DirectoryFile>(&text)
        .map(|d| d.entries)
        .map_err(|e| {
            vec![Problem::at(
                "tenants.directory_file",
                format!("the directory file {} is not valid: {e}", path.display()),
            )]
        })
}

/// Replaces the file's entries atomically.
pub fn write_directory(path: &Path, entries: &[TenantEntry]) -> Result<(), String> {
    let text = toml::to_string(&DirectoryFile {
        entries: entries.to_vec(),
    })
    .map_err(|e| format!("cannot encode the directory: {e}"))?;
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            b"# Tenant entries managed by cutover's admin API (PUT/DELETE /v1/tenants).\n",
        )?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write the directory file {}: {e}", path.display()))
}

impl Config {
    /// Problems with a set of tenant entries (inline and from the file).
    pub fn entry_problems(&self, entries: &[TenantEntry]) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for e in entries {
            if !seen.insert(e.tenant.as_str()) {
                p.push(format!("`tenants.entries` lists tenant \"{}\" twice", e.tenant).into());
            }
            if e.tenant.is_empty() {
                p.push("a tenant entry has an empty name".into());
            }
            if let Some(shard) = &e.shard {
                if !self.shards.contains_key(shard) {
                    p.push(
                        format!(
                            "`tenants.entries` \"{}\": shard \"{shard}\" is not configured",
                            e.tenant
                        )
                        .into(),
                    );
                }
            }
        }
        p
    }
}
