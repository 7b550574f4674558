//! A client connection's handshake: OPTIONS answered from the allow-list,
//! STARTUP checked against every cluster's versions, the login checked by
//! the `[auth]` cluster, then READY (or AUTH_SUCCESS) and, in v5, segments.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{ClientSession, SessionState};
use crate::frame::{Compression, Frame, Opcode};
use crate::protocol::request::read_startup;
use crate::protocol::{response, ErrorCode, ErrorFrame};
use crate::routing::ClusterId;
use crate::upstream::UpstreamError;

/// STARTUP options forwarded upstream; any other (ScyllaDB extensions
/// included) stays with the proxy.
const FORWARDED_STARTUP: &[&str] = &[
    "DRIVER_NAME",
    "DRIVER_VERSION",
    "APPLICATION_NAME",
    "APPLICATION_VERSION",
    "CLIENT_ID",
];

pub(super) fn supported() -> Bytes {
    response::supported(&[
        ("PROTOCOL_VERSIONS", &["3/v3", "4/v4", "5/v5"]),
        ("COMPRESSION", &["snappy", "lz4"]),
        ("CQL_VERSION", &["3.4.5"]),
    ])
}

impl<S: crate::upstream::Stream> ClientSession<S> {
    pub(super) async fn on_startup(
        &mut self,
        frame: Frame,
        out: &mpsc::UnboundedSender<Frame>,
    ) -> bool {
        if self.state.is_some() {
            return self
                .error(
                    frame.stream,
                    ErrorFrame::protocol(
                        "Unexpected message STARTUP, the connection is already started",
                    ),
                )
                .await;
        }
        let options = match read_startup(&frame.body) {
            Ok(o) => o,
            Err(e) => {
                return self
                    .error(frame.stream, ErrorFrame::protocol(e.to_string()))
                    .await
            }
        };
        let compression =
            match crate::protocol::request::negotiate_compression(&options, self.version) {
                Ok(c) => c,
                Err(m) => return self.error(frame.stream, ErrorFrame::protocol(m)).await,
            };
        let state = Arc::new(SessionState {
            proxy: self.proxy.clone(),
            version: self.version,
            face: self.face,
            keyspace: Mutex::new(None),
            startup: options
                .into_iter()
                .filter(|(k, _)| FORWARDED_STARTUP.contains(&k.as_str()))
                .collect(),
            upstreams: Mutex::new(HashMap::new()),
            connecting: tokio::sync::Mutex::new(()),
            client_credentials: Mutex::new(None),
            out: out.clone(),
            tasks: self.tasks.clone(),
            close: self.close_all.child_token(),
        });
        // Every cluster must speak the client's version (a tenant's requests
        // may reach any shard); if one does not, the client is told as
        // Cassandra tells it, and negotiates down.
        let clusters: Vec<ClusterId> = (0..self.proxy.clusters().len()).map(ClusterId).collect();
        if clusters
            .iter()
            .any(|s| !self.proxy.cluster(*s).speaks(self.version))
        {
            let common: Vec<String> = (3u8..=5)
                .filter(|v| clusters.iter().all(|s| self.proxy.cluster(*s).speaks(*v)))
                .map(|v| format!("{v}/v{v}"))
                .collect();
            let e = ErrorFrame::protocol(format!(
                "Invalid or unsupported protocol version ({}); supported versions are ({})",
                self.version,
                common.join(", ")
            ));
            self.error(frame.stream, e).await;
            let _ = self.framed.flush().await;
            return false;
        }
        // The [auth] cluster decides whether the client must log in; the
        // primary must be reachable, and speak this version, before READY.
        let auth_side = self.proxy.auth_cluster();
        match state.upstream(auth_side).await {
            Ok(_) => {}
            Err(UpstreamError::NoCredentials { .. }) => {
                self.authenticating = Some((state, compression));
                let body =
                    response::authenticate("org.apache.cassandra.auth.PasswordAuthenticator");
                return self
                    .answer_startup(frame.stream, Opcode::Authenticate, body, compression)
                    .await;
            }
            Err(e) => return self.refuse_startup(frame.stream, auth_side, e).await,
        }
        let primary = self.proxy.routing().default_primary(&self.proxy.policy());
        if let Err(e) = state.upstream(primary).await {
            return self.refuse_startup(frame.stream, primary, e).await;
        }
        self.state = Some(state);
        self.framed.codec_mut().set_authenticated();
        self.answer_startup(frame.stream, Opcode::Ready, Bytes::new(), compression)
            .await
    }

    /// READY or AUTHENTICATE: in v5 still in the old framing, after which
    /// segments (with LZ4 when asked for) start; in v3/v4 already compressed.
    async fn answer_startup(
        &mut self,
        stream: i16,
        op: Opcode,
        body: Bytes,
        compression: Option<Compression>,
    ) -> bool {
        if self.version >= 5 {
            let ok = self.reply(stream, op, body).await && self.framed.flush().await.is_ok();
            self.framed.codec_mut().set_compression(compression);
            self.framed.codec_mut().enable_segments();
            ok
        } else {
            self.framed.codec_mut().set_compression(compression);
            self.reply(stream, op, body).await
        }
    }

    async fn refuse_startup(&mut self, stream: i16, cluster: ClusterId, e: UpstreamError) -> bool {
        let err = match &e {
            UpstreamError::Handshake { error, .. }
                if error.code == ErrorCode::PROTOCOL_ERROR
                    && error.message.contains("protocol version") =>
            {
                // Let the driver negotiate down, as with a real node.
                ErrorFrame::protocol(format!(
                    "Invalid or unsupported protocol version ({}); supported versions are (3/v3, 4/v4, 5/v5)",
                    self.version
                ))
            }
            UpstreamError::Handshake { error, .. } => error.clone(),
            other => ErrorFrame::server(format!(
                "cutover: cannot reach the {} cluster: {other}",
                self.proxy.cluster(cluster).name
            )),
        };
        self.error(stream, err).await;
        let _ = self.framed.flush().await;
        false
    }

    /// SASL PLAIN from the client, checked by logging in to the `[auth]`
    /// cluster with it; that cluster's refusal is the client's answer.
    pub(super) async fn on_auth_response(&mut self, frame: Frame) -> bool {
        let Some((state, _)) = self.authenticating.clone() else {
            return self
                .error(
                    frame.stream,
                    ErrorFrame::protocol("Unexpected AUTH_RESPONSE"),
                )
                .await;
        };
        let (user, pass) = match crate::protocol::request::read_sasl_plain(&frame.body) {
            Ok(c) => c,
            Err(m) => {
                return self
                    .error(frame.stream, ErrorFrame::new(ErrorCode::BAD_CREDENTIALS, m))
                    .await
            }
        };
        *state.client_credentials.lock() = Some((user, pass));
        let auth_side = self.proxy.auth_cluster();
        match state.upstream(auth_side).await {
            Ok(_) => {}
            Err(UpstreamError::Handshake { error, .. }) => {
                *state.client_credentials.lock() = None;
                return self.error(frame.stream, error).await;
            }
            Err(e) => return self.refuse_startup(frame.stream, auth_side, e).await,
        }
        let primary = self.proxy.routing().default_primary(&self.proxy.policy());
        if let Err(e) = state.upstream(primary).await {
            return self.refuse_startup(frame.stream, primary, e).await;
        }
        self.authenticating = None;
        self.state = Some(state);
        self.framed.codec_mut().set_authenticated();
        self.reply(
            frame.stream,
            Opcode::AuthSuccess,
            response::auth_token(None),
        )
        .await
    }
}
