//! Which tenant a request belongs to, from its keyspace (`[tenants] key =
//! { keyspace = "REGEX" }`): the regex's first capture, or the whole
//! keyspace when the regex has none. Resolved once per keyspace and cached,
//! so a request costs one hash lookup.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use regex::Regex;

use crate::config::TenantKey;
use crate::metrics::Metrics;

/// Keyspaces remembered; beyond this a keyspace is resolved each time.
const CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: Arc<str>,
    /// Its latency series, when listed under `[metrics] tenants`.
    pub metrics: Option<u16>,
}

pub struct TenantResolver {
    pattern: Option<Regex>,
    cache: RwLock<HashMap<String, Option<Tenant>>>,
    metrics: Arc<Metrics>,
}

impl TenantResolver {
    /// `key` is validated by the config: a keyspace regex that compiles.
    pub fn new(key: &TenantKey, metrics: Arc<Metrics>) -> TenantResolver {
        let pattern = match key {
            TenantKey::Keyspace { keyspace } => Regex::new(keyspace).ok(),
            _ => None,
        };
        TenantResolver {
            pattern,
            cache: RwLock::new(HashMap::new()),
            metrics,
        }
    }

    pub fn of_keyspace(&self, keyspace: Option<&str>) -> Option<Tenant> {
        let pattern = self.pattern.as_ref()?;
        let ks = keyspace?;
        if let Some(t) = self.cache.read().get(ks) {
            return t.clone();
        }
        let tenant = pattern.captures(ks).map(|c| {
            let name = c.get(1).or_else(|| c.get(0)).map_or(ks, |m| m.as_str());
            Tenant {
                name: Arc::from(name),
                metrics: self.metrics.tenant_index(name),
            }
        });
        let mut cache = self.cache.write();
        if cache.len() < CACHE_ENTRIES {
            cache.insert(ks.to_string(), tenant.clone());
        }
        tenant
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsOptions;

    fn resolver(key: TenantKey) -> TenantResolver {
        let opts = MetricsOptions {
            tenants: vec!["wayne".into()],
            ..Default::default()
        };
        TenantResolver::new(&key, Arc::new(Metrics::new(opts, &[])))
    }

    #[test]
    fn the_first_capture_names_the_tenant() {
        let r = resolver(TenantKey::Keyspace {
            keyspace: "^t_(.*)$".into(),
        });
        let t = r.of_keyspace(Some("t_wayne")).unwrap();
        assert_eq!(&*t.name, "wayne");
        assert_eq!(t.metrics, Some(0));
        let other = r.of_keyspace(Some("t_stark")).unwrap();
        assert_eq!((&*other.name, other.metrics), ("stark", None));
        assert_eq!(r.of_keyspace(Some("shared")), None);
        assert_eq!(r.of_keyspace(None), None);
        // Cached answers are the same answers.
        assert_eq!(r.of_keyspace(Some("t_wayne")).unwrap(), t);
    }

    #[test]
    fn without_a_capture_the_keyspace_is_the_tenant() {
        let r = resolver(TenantKey::Keyspace {
            keyspace: "^wayne$".into(),
        });
        assert_eq!(&*r.of_keyspace(Some("wayne")).unwrap().name, "wayne");
        let none = resolver(TenantKey::default());
        assert_eq!(none.of_keyspace(Some("wayne")), None);
    }
}
