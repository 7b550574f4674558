//! Values of CQL's server-side functions (`now()`, `uuid()`,
//! `currentTimestamp()`, ...), computed here so that the embedded node can
//! answer them and the proxy can replace them with one value that every
//! cluster stores.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// 100-ns intervals between 1582-10-15 and 1970-01-01.
const UUID_EPOCH_OFFSET: u64 = 0x01B2_1DD2_1381_4000;

/// A version-1 UUID for the current time, unique within this process.
pub fn new_timeuuid() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering as AO};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static NODE: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    let node = NODE.get_or_init(rand::random::<[u8; 8]>);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ticks = now.as_nanos() as u64 / 100 + UUID_EPOCH_OFFSET;
    // Strictly increasing so two calls never collide.
    let mut last = LAST.load(AO::Relaxed);
    loop {
        if ticks <= last {
            ticks = last + 1;
        }
        match LAST.compare_exchange(last, ticks, AO::Relaxed, AO::Relaxed) {
            Ok(_) => break,
            Err(l) => last = l,
        }
    }
    let mut u = [0u8; 16];
    u[0..4].copy_from_slice(&((ticks & 0xffff_ffff) as u32).to_be_bytes());
    u[4..6].copy_from_slice(&(((ticks >> 32) & 0xffff) as u16).to_be_bytes());
    u[6..8].copy_from_slice(&((((ticks >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
    u[8] = (node[0] & 0x3f) | 0x80;
    u[9] = node[1];
    u[10..16].copy_from_slice(&node[2..8]);
    u
}

pub fn new_random_uuid() -> [u8; 16] {
    let mut u: [u8; 16] = rand::random();
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One server-side function's value, as a CQL literal (for query text) and
/// as bound bytes (for a prepared statement's hidden marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionValue {
    pub literal: String,
    pub bytes: Bytes,
}

/// The value of `name()` now, or `None` for a function this does not know.
pub fn evaluate(name: &str) -> Option<FunctionValue> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() as i64;
    Some(match name.to_ascii_lowercase().as_str() {
        "now" | "currenttimeuuid" => {
            let u = new_timeuuid();
            FunctionValue {
                literal: format_uuid(&u),
                bytes: Bytes::copy_from_slice(&u),
            }
        }
        "uuid" => {
            let u = new_random_uuid();
            FunctionValue {
                literal: format_uuid(&u),
                bytes: Bytes::copy_from_slice(&u),
            }
        }
        "currenttimestamp" => FunctionValue {
            literal: ms.to_string(),
            bytes: Bytes::copy_from_slice(&ms.to_be_bytes()),
        },
        "currentdate" => {
            let days = ms.div_euclid(86_400_000);
            let (y, m, d) = civil_from_days(days);
            let wire = (days + (1i64 << 31)) as u32;
            FunctionValue {
                literal: format!("'{y:04}-{m:02}-{d:02}'"),
                bytes: Bytes::copy_from_slice(&wire.to_be_bytes()),
            }
        }
        "currenttime" => {
            let nanos = (now.as_nanos() % 86_400_000_000_000) as i64;
            let s = nanos / 1_000_000_000;
            FunctionValue {
                literal: format!(
                    "'{:02}:{:02}:{:02}.{:09}'",
                    s / 3600,
                    s / 60 % 60,
                    s % 60,
                    nanos % 1_000_000_000
                ),
                bytes: Bytes::copy_from_slice(&nanos.to_be_bytes()),
            }
        }
        _ => return None,
    })
}

/// Year, month, day of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_wire_size_of_their_type() {
        assert_eq!(evaluate("now").unwrap().bytes.len(), 16);
        assert_eq!(
            evaluate("NOW").unwrap().bytes[6] >> 4,
            1,
            "a version 1 uuid"
        );
        assert_eq!(
            evaluate("uuid").unwrap().bytes[6] >> 4,
            4,
            "a version 4 uuid"
        );
        assert_eq!(evaluate("currentTimestamp").unwrap().bytes.len(), 8);
        assert_eq!(evaluate("currentdate").unwrap().bytes.len(), 4);
        assert!(evaluate("nosuch").is_none());
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn two_calls_never_give_the_same_timeuuid() {
        assert_ne!(evaluate("now").unwrap(), evaluate("now").unwrap());
    }
}
