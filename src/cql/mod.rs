//! The CQL lexer: text in, tokens out.
//!
//! Used by the embedded node's parser and, in the proxy, by the statement
//! classifier. It owns only lexical rules (identifiers, quoting, literals,
//! comments); grammar lives with whoever consumes the tokens.

mod lexer;

pub use lexer::{tokenize, LexError, Token};
