//! Writers for the spec's `[notation]` types.

use bytes::{BufMut, BytesMut};

pub fn put_string(dst: &mut BytesMut, s: &str) {
    dst.put_u16(s.len() as u16);
    dst.put_slice(s.as_bytes());
}

pub fn put_long_string(dst: &mut BytesMut, s: &str) {
    dst.put_i32(s.len() as i32);
    dst.put_slice(s.as_bytes());
}

pub fn put_bytes(dst: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            dst.put_i32(b.len() as i32);
            dst.put_slice(b);
        }
        None => dst.put_i32(-1),
    }
}

pub fn put_short_bytes(dst: &mut BytesMut, b: &[u8]) {
    dst.put_u16(b.len() as u16);
    dst.put_slice(b);
}

pub fn put_string_list(dst: &mut BytesMut, l: &[&str]) {
    dst.put_u16(l.len() as u16);
    for s in l {
        put_string(dst, s);
    }
}

pub fn put_string_map(dst: &mut BytesMut, m: &[(&str, &str)]) {
    dst.put_u16(m.len() as u16);
    for (k, v) in m {
        put_string(dst, k);
        put_string(dst, v);
    }
}

pub fn put_string_multimap(dst: &mut BytesMut, m: &[(&str, &[&str])]) {
    dst.put_u16(m.len() as u16);
    for (k, v) in m {
        put_string(dst, k);
        put_string_list(dst, v);
    }
}
