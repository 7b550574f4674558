//! The route file: the fields of the default route an operator set through
//! the admin API (`PUT /v1/policy`), kept beside the config file so that no
//! reload and no restart undoes them. It is written atomically (a
//! temporary file renamed over it) before a change takes effect.
//!
//! Each field remembers what the config file's `[route]` said when the API
//! set it: when the config file says something else later, it was edited
//! after the API change, and the config file wins for that field (the
//! newer change wins; `routing` logs it and drops the field from here).
//!
//! ```toml
//! [phase]
//! value = "target-primary"
//! config_value = "dual-write"
//! set_at = "2026-12-02T10:00:00Z"
//! by = "PUT /v1/policy"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Phase, Problem, RouteConfig, WriteMode};

/// One field of the default route as the admin API set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride<T> {
    pub value: T,
    /// What the config file's `[route]` said when the API set `value`.
    pub config_value: T,
    /// When (RFC 3339, UTC).
    pub set_at: String,
    /// Which call set it (`PUT /v1/policy`, `PUT /v1/policy?fleet=true`).
    pub by: String,
}

/// The fields of the default route the admin API set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverrides {
    pub shard: Option<RouteOverride<String>>,
    pub phase: Option<RouteOverride<Phase>>,
    pub write_mode: Option<RouteOverride<WriteMode>>,
    pub shadow_target_primary: Option<RouteOverride<bool>>,
}

/// The route in force, from the config file's `[route]` and the route file.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRoute {
    pub route: RouteConfig,
    /// The route file's fields that stand.
    pub kept: RouteOverrides,
    /// One sentence per field the config file now wins (it was edited
    /// after the API set the field): the route file should drop them.
    pub dropped: Vec<String>,
}

/// A value as the config file spells it (`"dual-write"`, not `DualWrite`).
pub fn spelled<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

/// One field: the override stands while the config file still says what it
/// said when the API set it.
fn stand<T: PartialEq + Clone + Serialize>(
    name: &str,
    from_config: &T,
    o: &Option<RouteOverride<T>>,
    into: &mut T,
    dropped: &mut Vec<String>,
) -> Option<RouteOverride<T>> {
    let o = o.as_ref()?;
    if &o.config_value == from_config {
        *into = o.value.clone();
        Some(o.clone())
    } else {
        dropped.push(format!(
            "route.{name}: {} set it to {} at {} while the config file said {}; the config file now says {}, a later change, which wins",
            o.by,
            spelled(&o.value),
            o.set_at,
            spelled(&o.config_value),
            spelled(from_config),
        ));
        None
    }
}

impl RouteOverrides {
    pub fn is_empty(&self) -> bool {
        self == &RouteOverrides::default()
    }

    /// The config file's `route` with the fields of this file that stand.
    pub fn merge(&self, route: &RouteConfig) -> MergedRoute {
        let mut merged = route.clone();
        let mut dropped = Vec::new();
        let kept = RouteOverrides {
            shard: stand(
                "shard",
                &route.shard,
                &self.shard,
                &mut merged.shard,
                &mut dropped,
            ),
            phase: stand(
                "phase",
                &route.phase,
                &self.phase,
                &mut merged.phase,
                &mut dropped,
            ),
            write_mode: stand(
                "write_mode",
                &route.write_mode,
                &self.write_mode,
                &mut merged.write_mode,
                &mut dropped,
            ),
            shadow_target_primary: stand(
                "shadow_target_primary",
                &route.shadow_target_primary,
                &self.shadow_target_primary,
                &mut merged.shadow_target_primary,
                &mut dropped,
            ),
        };
        MergedRoute {
            route: merged,
            kept,
            dropped,
        }
    }
}

/// The file's overrides; a file that does not exist yet has none.
pub fn read_route_file(path: &Path) -> Result<RouteOverrides, Vec<Problem>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RouteOverrides::default()),
        Err(e) => {
            return Err(vec![Problem::at(
                "route.file",
                format!("cannot read the route file {}: {e}", path.display()),
            )])
        }
    };
    toml::from_str::<RouteOverrides>(&text).map_err(|e| {
        vec![Problem::at("route.file", format!(
            "the route file {} is not valid (it holds the route set through the admin API; fix it or remove it to use the config file's [route]): {e}",
            path.display()
        ))]
    })
}

/// Replaces the file's overrides atomically.
pub fn write_route_file(path: &Path, overrides: &RouteOverrides) -> Result<(), String> {
    let text = toml::to_string(overrides).map_err(|e| format!("cannot encode the route: {e}"))?;
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            b"# The default route as set through cutover's admin API (PUT /v1/policy).\n\
              # Reloads and restarts read it, so they never undo an operator's change;\n\
              # a field edited in the config file's [route] afterwards wins over it.\n",
        )?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write the route file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back_and_a_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("cutover-route-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("route.toml");
        assert_eq!(read_route_file(&f).unwrap(), RouteOverrides::default());
        let o = RouteOverrides {
            phase: Some(RouteOverride {
                value: Phase::TargetPrimary,
                config_value: Phase::DualWrite,
                set_at: "2026-12-02T10:00:00Z".into(),
                by: "PUT /v1/policy".into(),
            }),
            ..Default::default()
        };
        write_route_file(&f, &o).unwrap();
        assert_eq!(read_route_file(&f).unwrap(), o);
        std::fs::write(&f, "[phase]\nvalue = \"sideways\"\n").unwrap();
        let e = read_route_file(&f).unwrap_err();
        assert!(
            e[0].message.contains("route file") && e[0].message.contains("sideways"),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn phase_set(value: Phase, config_value: Phase) -> RouteOverrides {
        RouteOverrides {
            phase: Some(RouteOverride {
                value,
                config_value,
                set_at: "2026-12-02T10:00:00Z".into(),
                by: "PUT /v1/policy".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_api_field_stands_while_the_config_file_says_what_it_said() {
        let config = RouteConfig::default(); // dual-write
        let o = phase_set(Phase::TargetPrimary, Phase::DualWrite);
        let m = o.merge(&config);
        assert_eq!(m.route.phase, Phase::TargetPrimary);
        assert_eq!(m.kept, o);
        assert!(m.dropped.is_empty());
        // Fields the API did not set follow the config file.
        let config = RouteConfig {
            shadow_target_primary: true,
            ..RouteConfig::default()
        };
        assert!(o.merge(&config).route.shadow_target_primary);
    }

    #[test]
    fn a_config_file_edited_afterwards_wins_and_says_so() {
        let o = phase_set(Phase::TargetPrimary, Phase::DualWrite);
        let config = RouteConfig {
            phase: Phase::ShadowReads,
            ..RouteConfig::default()
        };
        let m = o.merge(&config);
        assert_eq!(m.route.phase, Phase::ShadowReads);
        assert!(m.kept.is_empty());
        assert_eq!(m.dropped.len(), 1);
        let d = &m.dropped[0];
        assert!(
            d.contains("route.phase")
                && d.contains("\"target-primary\"")
                && d.contains("\"shadow-reads\"")
                && d.contains("PUT /v1/policy"),
            "{d}"
        );
    }
}
