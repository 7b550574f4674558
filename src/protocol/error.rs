//! ERROR bodies: the codes drivers act on, their extra fields, and a builder.

use bytes::{BufMut, Bytes, BytesMut};

use super::reader::{BodyError, BodyReader};
use super::writer::{put_short_bytes, put_string};

/// Error codes of v3–v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i32);

impl ErrorCode {
    pub const SERVER_ERROR: ErrorCode = ErrorCode(0x0000);
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(0x000A);
    pub const BAD_CREDENTIALS: ErrorCode = ErrorCode(0x0100);
    pub const UNAVAILABLE: ErrorCode = ErrorCode(0x1000);
    pub const OVERLOADED: ErrorCode = ErrorCode(0x1001);
    pub const IS_BOOTSTRAPPING: ErrorCode = ErrorCode(0x1002);
    pub const TRUNCATE_ERROR: ErrorCode = ErrorCode(0x1003);
    pub const WRITE_TIMEOUT: ErrorCode = ErrorCode(0x1100);
    pub const READ_TIMEOUT: ErrorCode = ErrorCode(0x1200);
    pub const SYNTAX_ERROR: ErrorCode = ErrorCode(0x2000);
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(0x2100);
    pub const INVALID: ErrorCode = ErrorCode(0x2200);
    pub const CONFIG_ERROR: ErrorCode = ErrorCode(0x2300);
    pub const ALREADY_EXISTS: ErrorCode = ErrorCode(0x2400);
    pub const UNPREPARED: ErrorCode = ErrorCode(0x2500);

    pub fn name(self) -> &'static str {
        match self.0 {
            0x0000 => "server_error",
            0x000A => "protocol_error",
            0x0100 => "bad_credentials",
            0x1000 => "unavailable",
            0x1001 => "overloaded",
            0x1002 => "is_bootstrapping",
            0x1003 => "truncate_error",
            0x1100 => "write_timeout",
            0x1200 => "read_timeout",
            0x1300 => "read_failure",
            0x1400 => "function_failure",
            0x1500 => "write_failure",
            0x2000 => "syntax_error",
            0x2100 => "unauthorized",
            0x2200 => "invalid",
            0x2300 => "config_error",
            0x2400 => "already_exists",
            0x2500 => "unprepared",
            _ => "unknown",
        }
    }
}

/// The code-specific fields that follow the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorExtra {
    None,
    Unavailable {
        consistency: u16,
        required: i32,
        alive: i32,
    },
    WriteTimeout {
        consistency: u16,
        received: i32,
        block_for: i32,
        write_type: String,
    },
    ReadTimeout {
        consistency: u16,
        received: i32,
        block_for: i32,
        data_present: bool,
    },
    AlreadyExists {
        keyspace: String,
        table: String,
    },
    Unprepared {
        id: Bytes,
    },
    /// Fields this code base does not interpret, kept as they came.
    Raw(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
    pub extra: ErrorExtra,
}

impl ErrorFrame {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame {
            code,
            message: message.into(),
            extra: ErrorExtra::None,
        }
    }

    pub fn protocol(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new(ErrorCode::PROTOCOL_ERROR, message)
    }

    pub fn invalid(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new(ErrorCode::INVALID, message)
    }

    pub fn syntax(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new(ErrorCode::SYNTAX_ERROR, message)
    }

    pub fn server(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new(ErrorCode::SERVER_ERROR, message)
    }

    pub fn unprepared(id: Bytes) -> ErrorFrame {
        let message = format!("Prepared query with ID {} not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)", hex(&id));
        ErrorFrame {
            code: ErrorCode::UNPREPARED,
            message,
            extra: ErrorExtra::Unprepared { id },
        }
    }

    pub fn already_exists(keyspace: &str, table: &str, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame {
            code: ErrorCode::ALREADY_EXISTS,
            message: message.into(),
            extra: ErrorExtra::AlreadyExists {
                keyspace: keyspace.into(),
                table: table.into(),
            },
        }
    }

    pub fn write_timeout(
        consistency: u16,
        write_type: &str,
        message: impl Into<String>,
    ) -> ErrorFrame {
        ErrorFrame {
            code: ErrorCode::WRITE_TIMEOUT,
            message: message.into(),
            extra: ErrorExtra::WriteTimeout {
                consistency,
                received: 0,
                block_for: 1,
                write_type: write_type.into(),
            },
        }
    }

    pub fn read_timeout(consistency: u16, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame {
            code: ErrorCode::READ_TIMEOUT,
            message: message.into(),
            extra: ErrorExtra::ReadTimeout {
                consistency,
                received: 0,
                block_for: 1,
                data_present: false,
            },
        }
    }

    pub fn unavailable(consistency: u16, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame {
            code: ErrorCode::UNAVAILABLE,
            message: message.into(),
            extra: ErrorExtra::Unavailable {
                consistency,
                required: 1,
                alive: 0,
            },
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(8 + self.message.len());
        b.put_i32(self.code.0);
        put_string(&mut b, &self.message);
        match &self.extra {
            ErrorExtra::None => {}
            ErrorExtra::Unavailable {
                consistency,
                required,
                alive,
            } => {
                b.put_u16(*consistency);
                b.put_i32(*required);
                b.put_i32(*alive);
            }
            ErrorExtra::WriteTimeout {
                consistency,
                received,
                block_for,
                write_type,
            } => {
                b.put_u16(*consistency);
                b.put_i32(*received);
                b.put_i32(*block_for);
                put_string(&mut b, write_type);
            }
            ErrorExtra::ReadTimeout {
                consistency,
                received,
                block_for,
                data_present,
            } => {
                b.put_u16(*consistency);
                b.put_i32(*received);
                b.put_i32(*block_for);
                b.put_u8(*data_present as u8);
            }
            ErrorExtra::AlreadyExists { keyspace, table } => {
                put_string(&mut b, keyspace);
                put_string(&mut b, table);
            }
            ErrorExtra::Unprepared { id } => put_short_bytes(&mut b, id),
            ErrorExtra::Raw(r) => b.put_slice(r),
        }
        b.freeze()
    }

    pub fn decode(body: &Bytes) -> Result<ErrorFrame, BodyError> {
        let mut r = BodyReader::new(body);
        let code = ErrorCode(r.int()?);
        let message = r.string()?.to_string();
        let extra = match code {
            ErrorCode::UNAVAILABLE => ErrorExtra::Unavailable {
                consistency: r.short()?,
                required: r.int()?,
                alive: r.int()?,
            },
            ErrorCode::WRITE_TIMEOUT => ErrorExtra::WriteTimeout {
                consistency: r.short()?,
                received: r.int()?,
                block_for: r.int()?,
                write_type: r.string()?.to_string(),
            },
            ErrorCode::READ_TIMEOUT => ErrorExtra::ReadTimeout {
                consistency: r.short()?,
                received: r.int()?,
                block_for: r.int()?,
                data_present: r.byte()? != 0,
            },
            ErrorCode::ALREADY_EXISTS => ErrorExtra::AlreadyExists {
                keyspace: r.string()?.to_string(),
                table: r.string()?.to_string(),
            },
            ErrorCode::UNPREPARED => ErrorExtra::Unprepared {
                id: r.short_bytes()?,
            },
            _ if r.remaining() > 0 => ErrorExtra::Raw(r.rest()),
            _ => ErrorExtra::None,
        };
        Ok(ErrorFrame {
            code,
            message,
            extra,
        })
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_extra_round_trips() {
        for e in [
            ErrorFrame::protocol("bad"),
            ErrorFrame::unprepared(Bytes::from_static(&[1, 2, 3])),
            ErrorFrame::already_exists("ks", "t", "exists"),
            ErrorFrame::write_timeout(1, "SIMPLE", "slow"),
            ErrorFrame::read_timeout(1, "slow"),
            ErrorFrame::unavailable(4, "down"),
        ] {
            assert_eq!(ErrorFrame::decode(&e.encode()).unwrap(), e);
        }
    }
}
