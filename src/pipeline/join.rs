//! The join stage: the client's answer from every cluster leg's, for the
//! `sync` write mode — the primary's when all succeeded, else the first
//! failure (the primary's first). `join` is a pure function (no socket, no
//! session); `join_counted` is the pipeline's, which also counts the failed
//! legs of a mirrored write.

use crate::cql::StatementKind;
use crate::frame::{Frame, Opcode};
use crate::protocol::response::read_result_kind;
use crate::protocol::{consistency, ErrorFrame};
use crate::routing::ClusterId;
use crate::session::SessionState;
use crate::upstream::UpstreamError;

/// What the join made of the legs' answers.
#[derive(Debug)]
pub(super) struct Joined {
    /// The client's answer (an ERROR frame from a cluster is an answer too),
    /// or an error the proxy itself raises.
    pub answer: Result<Frame, ErrorFrame>,
    /// The clusters whose leg failed (an ERROR, a timeout, unreachable).
    pub failed: Vec<ClusterId>,
}

/// Joins `answers`, one per cluster of `clusters` (primary first), of a
/// statement of `kind`; `name` names a cluster in an error, `version` is
/// the client's protocol version.
pub(super) fn join<'n>(
    clusters: &[ClusterId],
    answers: Vec<Result<Frame, UpstreamError>>,
    kind: StatementKind,
    name: impl Fn(ClusterId) -> &'n str,
    version: u8,
) -> Joined {
    let mut primary = None;
    let mut failure = None;
    let mut failed = Vec::new();
    let error = |e: ErrorFrame| Frame::response(version, 0, Opcode::Error, e.encode());
    for (id, a) in clusters.iter().zip(answers) {
        let cluster = name(*id);
        let frame = match a {
            Ok(f) => f,
            Err(e @ UpstreamError::Timeout { .. }) => {
                let msg = format!("cutover: the {cluster} cluster did not answer: {e}");
                error(if kind == StatementKind::Read {
                    ErrorFrame::read_timeout(consistency::ONE, msg)
                } else {
                    ErrorFrame::write_timeout(consistency::ONE, "SIMPLE", msg)
                })
            }
            Err(e) => error(ErrorFrame::unavailable(
                consistency::ONE,
                format!("cutover: the {cluster} cluster is unreachable: {e}"),
            )),
        };
        if frame.op() == Some(Opcode::Error) {
            failed.push(*id);
            if failure.is_none() {
                failure = Some(frame.clone());
            }
        }
        if primary.is_none() {
            primary = Some(frame);
        }
    }
    let answer = failure
        .or(primary)
        .ok_or_else(|| ErrorFrame::server("cutover: no cluster to send to"))
        .and_then(|chosen| {
            if chosen.op() == Some(Opcode::Result) {
                // Sanity: a result body must at least have its kind.
                read_result_kind(&chosen.body).map_err(super::errors::malformed)?;
            }
            Ok(chosen)
        });
    Joined { answer, failed }
}

/// The client's answer from every cluster's (`join::join`), counting the
/// failed legs of a mirrored write.
pub(super) fn join_counted(
    state: &SessionState,
    clusters: &[ClusterId],
    answers: Vec<Result<Frame, UpstreamError>>,
    kind: StatementKind,
) -> Result<Frame, super::errors::RequestError> {
    let proxy = &state.proxy;
    let j = super::join::join(
        clusters,
        answers,
        kind,
        |c| proxy.cluster(c).name.as_str(),
        state.version,
    );
    if clusters.len() > 1 && kind == StatementKind::Write {
        for c in &j.failed {
            proxy
                .cluster(*c)
                .metrics
                .mirror_write_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(j.answer?)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::ErrorCode;

    const O: ClusterId = ClusterId(0);
    const T: ClusterId = ClusterId(1);

    fn name(c: ClusterId) -> &'static str {
        ["origin", "target"][c.0]
    }

    /// A RESULT Void (kind 1), tagged by its stream id so the test can tell
    /// whose it is.
    fn ok(tag: i16) -> Result<Frame, UpstreamError> {
        Ok(Frame::response(
            4,
            tag,
            Opcode::Result,
            Bytes::from_static(&[0, 0, 0, 1]),
        ))
    }

    fn cql_error(tag: i16) -> Result<Frame, UpstreamError> {
        let e = ErrorFrame::new(ErrorCode::INVALID, "no such table");
        Ok(Frame::response(4, tag, Opcode::Error, e.encode()))
    }

    fn timeout() -> Result<Frame, UpstreamError> {
        Err(UpstreamError::Timeout {
            addr: "127.0.0.1:9043".parse().unwrap(),
            timeout: std::time::Duration::from_secs(10),
        })
    }

    fn down() -> Result<Frame, UpstreamError> {
        Err(UpstreamError::Connect {
            addr: "127.0.0.1:9043".parse().unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        })
    }

    /// What the client sees: the tag of the cluster answer it got (0 for
    /// an error the proxy made), and the code and message of an ERROR.
    fn seen(j: &Joined) -> (i16, Option<(i32, String)>) {
        let f = j.answer.as_ref().expect("an answer frame");
        let e = (f.op() == Some(Opcode::Error))
            .then(|| ErrorFrame::decode(&f.body).unwrap())
            .map(|e| (e.code.0, e.message));
        (f.stream, e)
    }

    #[test]
    fn sync_join_of_every_answer_pair() {
        use StatementKind::{Read, Write};
        type Case = (
            StatementKind,
            fn() -> Result<Frame, UpstreamError>,
            fn() -> Result<Frame, UpstreamError>,
            Option<i16>,
            Option<(ErrorCode, &'static str)>,
            &'static [ClusterId],
        );
        let cases: &[Case] = &[
            // Both answer: the primary's answer.
            (Write, || ok(10), || ok(20), Some(10), None, &[]),
            // The secondary fails: the client gets its failure.
            (Write, || ok(10), || cql_error(21), Some(21), None, &[T]),
            (
                Write,
                || ok(10),
                timeout,
                None,
                Some((
                    ErrorCode::WRITE_TIMEOUT,
                    "the target cluster did not answer",
                )),
                &[T],
            ),
            (
                Write,
                || ok(10),
                down,
                None,
                Some((ErrorCode::UNAVAILABLE, "the target cluster is unreachable")),
                &[T],
            ),
            // The primary fails: its failure first.
            (Write, || cql_error(11), timeout, Some(11), None, &[O, T]),
            (
                Write,
                timeout,
                || cql_error(21),
                None,
                Some((
                    ErrorCode::WRITE_TIMEOUT,
                    "the origin cluster did not answer",
                )),
                &[O, T],
            ),
            // A read's timeout is a read timeout.
            (
                Read,
                timeout,
                || ok(20),
                None,
                Some((ErrorCode::READ_TIMEOUT, "the origin cluster did not answer")),
                &[O],
            ),
        ];
        for (i, (kind, a, b, tag, error, failed)) in cases.iter().enumerate() {
            let j = join(&[O, T], vec![a(), b()], *kind, name, 4);
            let (got_tag, got_error) = seen(&j);
            assert_eq!(got_tag, tag.unwrap_or(0), "case {i}: whose answer");
            if let Some((code, text)) = error {
                let (c, m) = got_error.unwrap_or_else(|| panic!("case {i}: no error"));
                assert_eq!(c, code.0, "case {i}: {m}");
                assert!(m.contains(text), "case {i}: {m}");
            }
            assert_eq!(j.failed, *failed, "case {i}");
        }
    }

    #[test]
    fn a_result_without_its_kind_is_the_proxys_error_and_no_legs_is_one_too() {
        let bad = Ok(Frame::response(
            4,
            1,
            Opcode::Result,
            Bytes::from_static(&[0, 0]),
        ));
        let j = join(&[O], vec![bad], StatementKind::Read, name, 4);
        assert!(j.answer.unwrap_err().message.contains("malformed"));
        let j = join(&[], vec![], StatementKind::Read, name, 4);
        assert!(j.answer.unwrap_err().message.contains("no cluster"));
    }
}
