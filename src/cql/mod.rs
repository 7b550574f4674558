//! The CQL lexer (text in, tokens with their byte spans out) and the
//! statement classifier the proxy routes by.
//!
//! The lexer owns only lexical rules (identifiers, quoting, literals,
//! comments); the embedded node's parser and the classifier build on it. The
//! classifier reads no more grammar than routing needs.

mod classify;
pub mod functions;
mod lexer;
mod tenant_key;

pub use classify::{
    classify, classify_keyed, Classification, ClassificationCache, ServerFunction, StatementKind,
    TableRef, Ttl,
};
pub use tenant_key::{KeyValue, TableKey};

pub use lexer::{tokenize, tokenize_spanned, LexError, Spanned, Token};
