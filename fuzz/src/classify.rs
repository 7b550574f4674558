//! The statement classifier and the tenant-key mapping on any text, and
//! the classification cache's function replacement.
//!
//! Properties: no panic; classification is the same with and without the
//! cache; a marker the tenant key names is one of the statement's markers.

use cutover::cql::{classify_keyed, tokenize_spanned, ClassificationCache, KeyValue, Token};

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(c) = classify_keyed(&text, Some("app"), Some("tenant_id")) else {
        return;
    };
    let markers = tokenize_spanned(&text)
        .map(|t| {
            t.iter()
                .filter(|s| matches!(s.token, Token::Marker | Token::NamedMarker(_)))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(c.bind_markers, markers);
    assert_eq!(c.marker_offsets.len(), markers);
    for t in &c.tenant_keys {
        for k in &t.values {
            if let KeyValue::Marker { index, .. } = k {
                assert!(*index < markers, "marker {index} of {markers}");
            }
        }
    }
    let cache = ClassificationCache::new(16, Some("tenant_id".into()));
    let cached = cache
        .classify(&text, Some("app"))
        .expect("classified once already");
    assert_eq!(*cached, c);
    let _ = cached.replace_functions(&text, |f| format!("{f}_value"));
    let _ = cached.hidden_markers();
}
