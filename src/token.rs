//! Cassandra's Murmur3Partitioner: the token of a partition key, as every
//! Cassandra and ScyllaDB node computes it, so that the embedded node
//! orders and selects partitions by token and range scans (`copy`,
//! `validate`) split the ring as a real cluster does.
//!
//! The hash is MurmurHash3 x64 128-bit (seed 0), its first 64 bits as a
//! signed integer, with Cassandra's quirk kept: the tail bytes are widened
//! as *signed* bytes. `i64::MIN` is not a token (it is the ring's minimum,
//! outside every range), so a hash of `i64::MIN` becomes `i64::MAX`.

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The first 64 bits of Cassandra's MurmurHash3 x64 128 of `data`.
fn murmur3_h1(data: &[u8]) -> i64 {
    let (mut h1, mut h2) = (0u64, 0u64);
    let blocks = data.len() / 16;
    for i in 0..blocks {
        let b = &data[i * 16..i * 16 + 16];
        let mut k1 = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let mut k2 = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = &data[blocks * 16..];
    // Cassandra widens each tail byte as a signed byte.
    let byte = |i: usize| tail[i] as i8 as i64 as u64;
    let (mut k1, mut k2) = (0u64, 0u64);
    for i in (8..tail.len()).rev() {
        k2 ^= byte(i) << ((i - 8) * 8);
    }
    if tail.len() > 8 {
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    for i in (0..tail.len().min(8)).rev() {
        k1 ^= byte(i) << (i * 8);
    }
    if !tail.is_empty() {
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h1 as i64
}

/// The token of a partition key given as its serialized bytes (for a
/// composite key, `composite` of its components).
pub fn of_bytes(key: &[u8]) -> i64 {
    match murmur3_h1(key) {
        i64::MIN => i64::MAX,
        t => t,
    }
}

/// A composite partition key's bytes: each component as a 2-byte length,
/// its bytes and a 0 byte. One component is its bytes as they are.
pub fn composite<'a>(parts: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part").to_vec();
    }
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

/// The token of a partition key given as its components' bytes.
pub fn of_parts<'a>(parts: impl ExactSizeIterator<Item = &'a [u8]>) -> i64 {
    of_bytes(&composite(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::routing::partitioner::{Murmur3Partitioner, Partitioner};

    /// Every length from 0 to 80 (each tail length, several blocks), bytes
    /// of both signs: the same token as the scylla driver computes.
    #[test]
    fn tokens_match_the_scylla_drivers_murmur3() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..=80usize {
            for _ in 0..20 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let theirs = Murmur3Partitioner.hash_one(&data).value();
                assert_eq!(of_bytes(&data), theirs, "{data:02x?}");
            }
        }
    }

    /// Known tokens: an int key 1 (bytes 00 00 00 01) is
    /// -4069959284402364209 on every Cassandra node.
    #[test]
    fn an_int_key_has_cassandras_token() {
        assert_eq!(of_bytes(&1i32.to_be_bytes()), -4_069_959_284_402_364_209);
    }

    #[test]
    fn a_composite_key_is_framed_per_component() {
        let a: &[u8] = b"ab";
        let b: &[u8] = &[0, 0, 0, 7];
        assert_eq!(
            composite([a, b].into_iter()),
            vec![0, 2, b'a', b'b', 0, 0, 4, 0, 0, 0, 7, 0]
        );
        assert_eq!(composite([a].into_iter()), b"ab".to_vec());
    }
}
