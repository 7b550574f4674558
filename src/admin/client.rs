//! A minimal HTTP/1.1 client for the admin API: what `?fleet=true` uses to
//! reach the other instances and what `cutover tenants` uses to reach one.
//! Loopback or a private network, JSON bodies, one request per connection,
//! over TLS when the admin API speaks it (`[admin_tls]`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::TlsTo;

/// Sends one request (over TLS when `tls` is given); the status code and
/// the body.
pub async fn request(
    addr: SocketAddr,
    tls: Option<&TlsTo>,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let exchange = async {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot reach the admin API at {addr}: {e}"))?;
        match tls {
            None => exchange(s, addr, method, path, body, token).await,
            Some(t) => {
                let s = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(t.name.clone(), s)
                    .await
                    .map_err(|e| format!("TLS with the admin API at {addr}: {e}"))?;
                exchange(s, addr, method, path, body, token).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("the admin API at {addr} did not answer within {timeout:?}"))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    parse(&raw).ok_or_else(|| format!("{addr} answered something that is not HTTP"))
}

fn parse(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return Some((status, rest.to_string()));
    }
    let mut out = String::new();
    let mut s = rest;
    while let Some((size, tail)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            break;
        }
        out.push_str(tail.get(..n)?);
        s = tail.get(n..)?.trim_start_matches("\r\n");
    }
    Some((status, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse(plain), Some((200, "{}".into())));
        let chunked = b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some((400, "abcde".into())));
        assert_eq!(parse(b"garbage"), None);
    }
}
