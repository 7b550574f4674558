//! The CQL lexer on any text.
//!
//! Properties: no panic; spans are in order, inside the text, on character
//! boundaries and do not overlap; what lies between them is only white
//! space and comments (the tokens cover the input); lexing the text of one
//! token alone gives that token back for words, numbers and symbols.

use cutover::cql::{tokenize_spanned, Token};

fn gap_is_blank(gap: &str) -> bool {
    let mut rest = gap.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("--") || rest.starts_with("//") {
            match rest.find('\n') {
                Some(n) => rest = &rest[n..],
                None => return true,
            }
        } else if let Some(body) = rest.strip_prefix("/*") {
            match body.find("*/") {
                Some(n) => rest = &body[n + 2..],
                None => return false,
            }
        } else {
            return false;
        }
        rest = rest.trim_start();
    }
    true
}

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(spans) = tokenize_spanned(&text) else {
        return;
    };
    let mut at = 0;
    for s in &spans {
        assert!(
            at <= s.start && s.start < s.end && s.end <= text.len(),
            "{s:?} after {at}"
        );
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        let gap = &text[at..s.start];
        assert!(gap_is_blank(gap), "not covered by a token: {gap:?}");
        if matches!(
            s.token,
            Token::Ident(_) | Token::Int(_) | Token::Sym(_) | Token::Marker
        ) {
            let alone = tokenize_spanned(&text[s.start..s.end]).expect("a token lexes alone");
            assert_eq!(alone.len(), 1, "{:?}", &text[s.start..s.end]);
            assert_eq!(alone[0].token, s.token);
        }
        at = s.end;
    }
    assert!(
        gap_is_blank(&text[at..]),
        "tail not covered: {:?}",
        &text[at..]
    );
}
