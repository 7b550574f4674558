//! Ids the protocol derives from a statement, computed the way Cassandra
//! does, so that the proxy (its client-facing ids) and the embedded node
//! agree with a real cluster.

use md5::{Digest, Md5};

/// Cassandra's prepared id: MD5 of the session keyspace (if any) and the
/// text.
pub fn prepared_id(keyspace: Option<&str>, text: &str) -> [u8; 16] {
    let mut h = Md5::new();
    if let Some(k) = keyspace {
        h.update(k.as_bytes());
    }
    h.update(text.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_the_keyspace_then_the_text() {
        // MD5("") and MD5("ksSELECT 1"), as any md5 tool prints them.
        let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(prepared_id(None, "")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            prepared_id(Some("ks"), "SELECT 1"),
            prepared_id(None, "ksSELECT 1")
        );
    }
}
