use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// An unquoted identifier or keyword, lower-cased (CQL folds case).
    Ident(String),
    /// A double-quoted identifier, case kept.
    QuotedIdent(String),
    /// A string literal ('...' or $$...$$), unescaped.
    Str(String),
    /// An integer literal as written (sign not included).
    Int(String),
    /// A float literal as written, including NaN and Infinity.
    Float(String),
    Uuid(String),
    /// A 0x... blob literal.
    Blob(Vec<u8>),
    /// `?`
    Marker,
    /// `:name`
    NamedMarker(String),
    /// Punctuation and operators: ( ) [ ] { } , ; . * = != < <= > >= + - :
    Sym(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s}"),
            Token::QuotedIdent(s) => write!(f, "\"{s}\""),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Int(s) | Token::Float(s) | Token::Uuid(s) => write!(f, "{s}"),
            Token::Blob(b) => write!(
                f,
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
            Token::Marker => write!(f, "?"),
            Token::NamedMarker(n) => write!(f, ":{n}"),
            Token::Sym(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line 1:{position} {message}")]
pub struct LexError {
    pub position: usize,
    pub message: String,
}

fn is_uuid_at(b: &[u8], i: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut p = i;
    for (g, n) in GROUPS.iter().enumerate() {
        for _ in 0..*n {
            if p >= b.len() || !b[p].is_ascii_hexdigit() {
                return false;
            }
            p += 1;
        }
        if g < 4 {
            if p >= b.len() || b[p] != b'-' {
                return false;
            }
            p += 1;
        }
    }
    p >= b.len() || !(b[p].is_ascii_alphanumeric() || b[p] == b'_')
}

/// A token and the byte range of the text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

pub fn tokenize(text: &str) -> Result<Vec<Token>, LexError> {
    Ok(tokenize_spanned(text)?
        .into_iter()
        .map(|s| s.token)
        .collect())
}

pub fn tokenize_spanned(text: &str) -> Result<Vec<Spanned>, LexError> {
    let b = text.as_bytes();
    let mut raw: Vec<(Token, usize)> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut i = 0;
    let err = |position: usize, message: String| LexError { position, message };
    while i < b.len() {
        // Close the span of the token pushed by the previous iteration.
        while ends.len() < raw.len() {
            ends.push(i);
        }
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Comments: -- and // to end of line, /* ... */.
        if (c == b'-' && b.get(i + 1) == Some(&b'-')) || (c == b'/' && b.get(i + 1) == Some(&b'/'))
        {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match text[i + 2..].find("*/") {
                Some(end) => i = i + 2 + end + 2,
                None => return Err(err(i, "unterminated comment".into())),
            }
            continue;
        }
        if c == b'\'' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match text[j..].find('\'') {
                    None => return Err(err(i, "unterminated string literal".into())),
                    Some(k) => {
                        s.push_str(&text[j..j + k]);
                        j += k + 1;
                        if b.get(j) == Some(&b'\'') {
                            s.push('\'');
                            j += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            push(&mut raw, i, Token::Str(s));
            i = j;
            continue;
        }
        if c == b'$' && b.get(i + 1) == Some(&b'$') {
            match text[i + 2..].find("$$") {
                Some(end) => {
                    push(
                        &mut raw,
                        i,
                        Token::Str(text[i + 2..i + 2 + end].to_string()),
                    );
                    i = i + 2 + end + 2;
                }
                None => return Err(err(i, "unterminated $$ string".into())),
            }
            continue;
        }
        if c == b'"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match text[j..].find('"') {
                    None => return Err(err(i, "unterminated quoted identifier".into())),
                    Some(k) => {
                        s.push_str(&text[j..j + k]);
                        j += k + 1;
                        if b.get(j) == Some(&b'"') {
                            s.push('"');
                            j += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            push(&mut raw, i, Token::QuotedIdent(s));
            i = j;
            continue;
        }
        if is_uuid_at(b, i) {
            push(
                &mut raw,
                i,
                Token::Uuid(text[i..i + 36].to_ascii_lowercase()),
            );
            i += 36;
            continue;
        }
        if c == b'0' && matches!(b.get(i + 1), Some(b'x') | Some(b'X')) {
            let mut j = i + 2;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            let hex = &text[i + 2..j];
            if !hex.len().is_multiple_of(2) {
                return Err(err(
                    i,
                    format!("blob literal 0x{hex} has an odd number of digits"),
                ));
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).expect("hex digits"))
                .collect();
            push(&mut raw, i, Token::Blob(bytes));
            i = j;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let mut j = i;
            let mut float = false;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j < b.len() && b[j] == b'.' && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                float = true;
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
                let mut k = j + 1;
                if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
                    k += 1;
                }
                if k < b.len() && b[k].is_ascii_digit() {
                    float = true;
                    j = k;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            // A number glued to letters is an identifier-ish error, e.g. "1abc".
            if j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'_') {
                return Err(err(
                    i,
                    format!("no viable alternative at input '{}'", &text[i..=j]),
                ));
            }
            let s = text[i..j].to_string();
            push(
                &mut raw,
                i,
                if float {
                    Token::Float(s)
                } else {
                    Token::Int(s)
                },
            );
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let word = text[i..j].to_ascii_lowercase();
            if word == "nan" || word == "infinity" {
                push(&mut raw, i, Token::Float(word));
            } else {
                push(&mut raw, i, Token::Ident(word));
            }
            i = j;
            continue;
        }
        if c == b':'
            && b.get(i + 1)
                .is_some_and(|x| x.is_ascii_alphabetic() || *x == b'_' || *x == b'"')
        {
            let mut j = i + 1;
            if b[j] == b'"' {
                let end = text[j + 1..]
                    .find('"')
                    .ok_or_else(|| err(i, "unterminated marker name".into()))?;
                push(
                    &mut raw,
                    i,
                    Token::NamedMarker(text[j + 1..j + 1 + end].to_string()),
                );
                i = j + 1 + end + 1;
                continue;
            }
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            push(
                &mut raw,
                i,
                Token::NamedMarker(text[i + 1..j].to_ascii_lowercase()),
            );
            i = j;
            continue;
        }
        // Bytes, not a str slice: the next character may be multi-byte.
        let sym: &'static str = match b.get(i..i + 2).unwrap_or_default() {
            b"<=" => "<=",
            b">=" => ">=",
            b"!=" => "!=",
            _ => match c {
                b'(' => "(",
                b')' => ")",
                b'[' => "[",
                b']' => "]",
                b'{' => "{",
                b'}' => "}",
                b',' => ",",
                b';' => ";",
                b'.' => ".",
                b'*' => "*",
                b'=' => "=",
                b'<' => "<",
                b'>' => ">",
                b'+' => "+",
                b'-' => "-",
                b':' => ":",
                b'?' => "?",
                b'/' => "/",
                b'%' => "%",
                _ => {
                    let ch = text[i..].chars().next().unwrap_or('?');
                    return Err(err(i, format!("token recognition error at: '{ch}'")));
                }
            },
        };
        if sym == "?" {
            push(&mut raw, i, Token::Marker);
        } else {
            push(&mut raw, i, Token::Sym(sym));
        }
        i += sym.len();
    }
    while ends.len() < raw.len() {
        ends.push(i);
    }
    Ok(raw
        .into_iter()
        .zip(ends)
        .map(|((token, start), end)| Spanned { token, start, end })
        .collect())
}

fn push(raw: &mut Vec<(Token, usize)>, start: usize, token: Token) {
    raw.push((token, start));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_a_realistic_statement() {
        let t = tokenize(
            "INSERT INTO ks.\"T\" (a, b) VALUES ('it''s', -1.5e3) USING TTL ? -- trailing\n AND TIMESTAMP :ts",
        )
        .unwrap();
        assert_eq!(t[0], Token::Ident("insert".into()));
        assert_eq!(t[4], Token::QuotedIdent("T".into()));
        assert!(t.contains(&Token::Str("it's".into())));
        assert!(t.contains(&Token::Float("1.5e3".into())));
        assert!(t.contains(&Token::Marker));
        assert_eq!(t.last(), Some(&Token::NamedMarker("ts".into())));
    }

    #[test]
    fn uuids_blobs_and_dollar_strings() {
        let t = tokenize("0xCAFE 123e4567-e89b-12d3-a456-426614174000 $$a'b$$ 42").unwrap();
        assert_eq!(
            t,
            vec![
                Token::Blob(vec![0xca, 0xfe]),
                Token::Uuid("123e4567-e89b-12d3-a456-426614174000".into()),
                Token::Str("a'b".into()),
                Token::Int("42".into()),
            ]
        );
    }

    #[test]
    fn spans_cover_each_token_exactly() {
        let text = "INSERT INTO t (a) VALUES (now())  -- x";
        let spans = tokenize_spanned(text).unwrap();
        let words: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
        assert_eq!(
            words,
            ["INSERT", "INTO", "t", "(", "a", ")", "VALUES", "(", "now", "(", ")", ")"]
        );
    }

    #[test]
    fn multi_byte_characters_beside_symbols_are_errors_not_panics() {
        // Each of these sliced a str inside the euro sign before.
        for text in [
            "SELECT * FROM t WHERE a =€",
            "SELECT (€",
            "x<€",
            "€",
            "a.€b",
        ] {
            let e = tokenize(text).unwrap_err();
            assert!(
                e.message.contains("token recognition error at: '€'"),
                "{text}: {e}"
            );
        }
        // Inside quotes they are text like any other.
        assert_eq!(
            tokenize("SELECT '€=' FROM \"€\"").unwrap()[1],
            Token::Str("€=".into())
        );
    }

    #[test]
    fn errors_carry_a_position() {
        assert_eq!(tokenize("SELECT 'open").unwrap_err().position, 7);
        assert!(tokenize("SELECT # FROM t").is_err());
    }
}
