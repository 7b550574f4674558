//! The node's error type: every failure a statement can meet, mapped to the
//! CQL error a driver understands.

use crate::protocol::{ErrorCode, ErrorFrame};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?}")]
pub struct NodeError(pub ErrorFrame);

impl NodeError {
    pub fn invalid(m: impl Into<String>) -> NodeError {
        NodeError(ErrorFrame::invalid(m))
    }

    pub fn syntax(m: impl Into<String>) -> NodeError {
        NodeError(ErrorFrame::syntax(m))
    }

    pub fn unauthorized(m: impl Into<String>) -> NodeError {
        NodeError(ErrorFrame::new(ErrorCode::UNAUTHORIZED, m))
    }

    pub fn already_exists(ks: &str, table: &str, m: impl Into<String>) -> NodeError {
        NodeError(ErrorFrame::already_exists(ks, table, m))
    }

    pub fn config(m: impl Into<String>) -> NodeError {
        NodeError(ErrorFrame::new(ErrorCode::CONFIG_ERROR, m))
    }

    pub fn unconfigured_table(name: &str) -> NodeError {
        NodeError::invalid(format!("unconfigured table {name}"))
    }
}

impl From<super::parser::SyntaxError> for NodeError {
    fn from(e: super::parser::SyntaxError) -> Self {
        NodeError::syntax(e.0)
    }
}

impl From<super::value::ValueError> for NodeError {
    fn from(e: super::value::ValueError) -> Self {
        NodeError::invalid(e.0)
    }
}
