//! Where a statement gives the tenant column's value (`[tenants] key =
//! { column = "tenant_id" }`): for each table it names, the literals and
//! bind markers the column is set to (INSERT's column list zipped with its
//! VALUES) or restricted by in its WHERE clause (`= x`, `IN ?`,
//! `IN (x, y)`). Read once per statement text, with the classification.

use super::classify::TableRef;
use super::lexer::{Spanned, Token};

/// One value a statement gives the tenant column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// Written in the text: a string, an integer (in decimal) or a UUID
    /// (lower case).
    Literal(String),
    /// Bound at this marker (its index among all the statement's markers).
    Marker { index: usize, name: Option<String> },
    /// `IN ?`: a list of values bound at this marker.
    ListMarker { index: usize, name: Option<String> },
}

/// A table the statement touches, and what it gives that table's tenant
/// column: empty when it gives nothing the proxy can read (the column is
/// not restricted, or set by an expression, a function call, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    pub table: TableRef,
    pub values: Vec<KeyValue>,
}

fn ident(t: Option<&Spanned>) -> Option<&str> {
    match t.map(|s| &s.token) {
        Some(Token::Ident(w)) | Some(Token::QuotedIdent(w)) => Some(w),
        _ => None,
    }
}

fn is_kw(t: Option<&Spanned>, kw: &str) -> bool {
    matches!(t, Some(Spanned { token: Token::Ident(w), .. }) if w == kw)
}

fn is_sym(t: Option<&Spanned>, sym: &str) -> bool {
    matches!(t, Some(Spanned { token: Token::Sym(s), .. }) if *s == sym)
}

/// The tokens of a statement with each marker's index among all markers.
struct Stmt<'a> {
    toks: &'a [Spanned],
    /// Index among the statement's markers, for marker tokens.
    marker: Vec<Option<usize>>,
}

impl Stmt<'_> {
    fn table_at(&self, i: usize) -> Option<TableRef> {
        let first = ident(self.toks.get(i))?.to_string();
        if is_sym(self.toks.get(i + 1), ".") {
            Some(TableRef {
                keyspace: Some(first),
                table: ident(self.toks.get(i + 2))?.to_string(),
            })
        } else {
            Some(TableRef {
                keyspace: None,
                table: first,
            })
        }
    }

    /// The value of a one-token term at `i` (`-` before an integer allowed),
    /// and the index after it; None for anything longer.
    fn term(&self, i: usize) -> Option<(KeyValue, usize)> {
        let (negative, at) = if is_sym(self.toks.get(i), "-") {
            (true, i + 1)
        } else {
            (false, i)
        };
        let t = self.toks.get(at)?;
        let v = match &t.token {
            Token::Str(s) if !negative => KeyValue::Literal(s.clone()),
            Token::Int(n) => {
                let n: i128 = n.parse().ok()?;
                KeyValue::Literal(if negative { -n } else { n }.to_string())
            }
            Token::Uuid(u) if !negative => KeyValue::Literal(u.to_ascii_lowercase()),
            Token::Marker if !negative => KeyValue::Marker {
                index: self.marker[at]?,
                name: None,
            },
            Token::NamedMarker(n) if !negative => KeyValue::Marker {
                index: self.marker[at]?,
                name: Some(n.clone()),
            },
            _ => return None,
        };
        // A term is one token: `'a' + 'b'` or `f(x)` is not read.
        let next = self.toks.get(at + 1);
        let ends = next.is_none()
            || is_sym(next, ",")
            || is_sym(next, ")")
            || is_sym(next, ";")
            || matches!(next.map(|t| &t.token), Some(Token::Ident(_)));
        ends.then_some((v, at + 1))
    }

    /// `( a, b, c )` starting at the `(` at `i`: each element's first token
    /// and whether the element is exactly one term; and the index after `)`.
    fn list(&self, i: usize) -> Option<(Vec<Option<KeyValue>>, usize)> {
        if !is_sym(self.toks.get(i), "(") {
            return None;
        }
        let mut out = Vec::new();
        let mut at = i + 1;
        let mut depth = 0;
        let mut start = at;
        while let Some(t) = self.toks.get(at) {
            match &t.token {
                Token::Sym("(") | Token::Sym("[") | Token::Sym("{") => depth += 1,
                Token::Sym(")") if depth == 0 => {
                    if at > start {
                        out.push(self.element(start, at));
                    }
                    return Some((out, at + 1));
                }
                Token::Sym(")") | Token::Sym("]") | Token::Sym("}") => depth -= 1,
                Token::Sym(",") if depth == 0 => {
                    out.push(self.element(start, at));
                    start = at + 1;
                }
                _ => {}
            }
            at += 1;
        }
        None
    }

    fn element(&self, start: usize, end: usize) -> Option<KeyValue> {
        self.term(start)
            .filter(|(_, after)| *after == end)
            .map(|(v, _)| v)
    }

    fn insert(&self, column: &str, key: &mut TableKey, into: usize) {
        // INSERT INTO t (a, b) VALUES (x, y): after the table name.
        let after_name = if is_sym(self.toks.get(into + 2), ".") {
            into + 4
        } else {
            into + 2
        };
        let Some((columns, after)) = self.list(after_name) else {
            return; // INSERT ... JSON
        };
        let names: Vec<Option<&str>> = (after_name + 1..after)
            .filter(|i| {
                let prev = &self.toks[i - 1];
                matches!(prev.token, Token::Sym("(") | Token::Sym(","))
            })
            .map(|i| ident(self.toks.get(i)))
            .collect();
        if names.len() != columns.len() {
            // A column list that is not `name, name, ...` (`(a b)`, `(a,)`):
            // the cluster refuses it; no tenant is read from it.
            return;
        }
        let Some(position) = names.iter().position(|n| *n == Some(column)) else {
            return;
        };
        if !is_kw(self.toks.get(after), "values") {
            return;
        }
        if let Some((values, _)) = self.list(after + 1) {
            if let Some(Some(v)) = values.into_iter().nth(position) {
                key.values.push(v);
            }
        }
    }

    /// `WHERE ... column = x`, `column IN ?`, `column IN (x, y)`, up to the
    /// clauses that follow WHERE.
    fn restriction(&self, column: &str, key: &mut TableKey, from: usize) {
        let mut depth = 0;
        let mut in_where = false;
        for i in from..self.toks.len() {
            let t = &self.toks[i];
            match &t.token {
                Token::Sym("(") => depth += 1,
                Token::Sym(")") => depth -= 1,
                Token::Ident(w) if depth == 0 => match w.as_str() {
                    "where" => in_where = true,
                    "if" | "group" | "order" | "limit" | "per" | "allow" => return,
                    _ => {}
                },
                _ => {}
            }
            let named = ident(Some(t)) == Some(column)
                && (is_kw(self.toks.get(i.wrapping_sub(1)), "where")
                    || is_kw(self.toks.get(i.wrapping_sub(1)), "and"));
            if !in_where || depth != 0 || !named {
                continue;
            }
            if is_sym(self.toks.get(i + 1), "=") {
                if let Some((v, _)) = self.term(i + 2) {
                    key.values.push(v);
                }
            } else if is_kw(self.toks.get(i + 1), "in") {
                match self.toks.get(i + 2).map(|t| &t.token) {
                    Some(Token::Marker) | Some(Token::NamedMarker(_)) => {
                        let name = match &self.toks[i + 2].token {
                            Token::NamedMarker(n) => Some(n.clone()),
                            _ => None,
                        };
                        if let Some(index) = self.marker[i + 2] {
                            key.values.push(KeyValue::ListMarker { index, name });
                        }
                    }
                    _ => {
                        if let Some((values, _)) = self.list(i + 2) {
                            // Every element must be read, or none counts.
                            if values.iter().all(Option::is_some) {
                                key.values.extend(values.into_iter().flatten());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// For each table a DML statement or SELECT names (each child of a BATCH),
/// what it gives `column`. `toks` is the whole statement.
pub fn tenant_keys(toks: &[Spanned], column: &str) -> Vec<TableKey> {
    let mut next = 0;
    let marker = toks
        .iter()
        .map(|t| match t.token {
            Token::Marker | Token::NamedMarker(_) => {
                next += 1;
                Some(next - 1)
            }
            _ => None,
        })
        .collect();
    let s = Stmt { toks, marker };
    // Each child statement starts at INSERT, UPDATE, DELETE or SELECT (none
    // of them may be an unquoted column name).
    let starts: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(&t.token, Token::Ident(w) if matches!(w.as_str(), "insert" | "update" | "delete" | "select")))
        .map(|(i, _)| i)
        .collect();
    let mut keys = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(toks.len());
        let child = Stmt {
            toks: &s.toks[..end],
            marker: s.marker[..end].to_vec(),
        };
        let verb = ident(toks.get(start)).unwrap_or_default();
        let table_at = match verb {
            "insert" if is_kw(toks.get(start + 1), "into") => Some(start + 2),
            "update" => Some(start + 1),
            _ => (start..end)
                .find(|i| is_kw(toks.get(*i), "from"))
                .map(|i| i + 1),
        };
        let Some(at) = table_at else { continue };
        let Some(table) = child.table_at(at) else {
            continue;
        };
        let mut key = TableKey {
            table,
            values: Vec::new(),
        };
        if verb == "insert" {
            child.insert(column, &mut key, start + 1);
        } else {
            child.restriction(column, &mut key, at);
        }
        keys.push(key);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cql::tokenize_spanned;

    fn keys(text: &str) -> Vec<(String, Vec<KeyValue>)> {
        tenant_keys(&tokenize_spanned(text).unwrap(), "tenant_id")
            .into_iter()
            .map(|k| (k.table.table, k.values))
            .collect()
    }

    fn lit(s: &str) -> KeyValue {
        KeyValue::Literal(s.into())
    }

    fn marker(index: usize) -> KeyValue {
        KeyValue::Marker { index, name: None }
    }

    #[test]
    fn a_malformed_insert_column_list_names_no_tenant() {
        // Each tripped a debug assertion before (names and columns differ).
        for text in [
            "INSERT INTO t (tenant_id,) VALUES ('a')",
            "INSERT INTO t (id, tenant_id,) VALUES (1, 'a')",
        ] {
            assert_eq!(keys(text), [("t".into(), vec![])], "{text}");
        }
    }

    #[test]
    fn insert_columns_are_zipped_with_values() {
        assert_eq!(
            keys("INSERT INTO ks.t (id, tenant_id, v) VALUES (?, ?, ?)"),
            [("t".into(), vec![marker(1)])]
        );
        assert_eq!(
            keys("INSERT INTO t (\"tenant_id\", id) VALUES ('wayne', now()) USING TTL 5"),
            [("t".into(), vec![lit("wayne")])]
        );
        assert_eq!(
            keys("INSERT INTO t (id, v, tenant_id) VALUES (:id, [1, 2], :tid)"),
            [(
                "t".into(),
                vec![KeyValue::Marker {
                    index: 1,
                    name: Some("tid".into())
                }]
            )]
        );
        // An expression or JSON is not read.
        assert_eq!(
            keys("INSERT INTO t (tenant_id, id) VALUES (f(?), 1)"),
            [("t".into(), vec![])]
        );
        assert_eq!(
            keys("INSERT INTO t JSON '{\"tenant_id\": \"x\"}'"),
            [("t".into(), vec![])]
        );
    }

    #[test]
    fn where_clauses_give_equalities_and_in_lists() {
        assert_eq!(
            keys("SELECT * FROM t WHERE tenant_id = 42 AND id = ?"),
            [("t".into(), vec![lit("42")])]
        );
        assert_eq!(
            keys("SELECT a FROM t WHERE id = ? AND tenant_id IN ? LIMIT ?"),
            [(
                "t".into(),
                vec![KeyValue::ListMarker {
                    index: 1,
                    name: None
                }]
            )]
        );
        assert_eq!(
            keys("DELETE FROM t USING TIMESTAMP ? WHERE tenant_id IN ('a', ?, -7)"),
            [("t".into(), vec![lit("a"), marker(1), lit("-7")])]
        );
        assert_eq!(
            keys("UPDATE t SET tenant_id = 'no', v = ? WHERE tenant_id = 5a8e8a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5B IF v = ?"),
            [(
                "t".into(),
                vec![lit("5a8e8a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")]
            )]
        );
        // The column inside token(), a condition, or a scan: nothing.
        assert_eq!(
            keys("SELECT * FROM t WHERE token(tenant_id) > ?"),
            [("t".into(), vec![])]
        );
        assert_eq!(
            keys("UPDATE t SET v = 1 WHERE id = 1 IF tenant_id = 'x'"),
            [("t".into(), vec![])]
        );
        assert_eq!(keys("SELECT * FROM t"), [("t".into(), vec![])]);
        assert_eq!(
            keys("SELECT * FROM t WHERE tenant_id IN ('a', f(1))"),
            [("t".into(), vec![])]
        );
    }

    #[test]
    fn batch_children_each_have_their_own() {
        let text = "BEGIN BATCH USING TIMESTAMP ? \
            INSERT INTO a (tenant_id, id) VALUES (?, 1); \
            UPDATE b SET v = ? WHERE tenant_id = 'x' AND id = 2 \
            DELETE FROM c WHERE id = ? APPLY BATCH";
        assert_eq!(
            keys(text),
            [
                ("a".into(), vec![marker(1)]),
                ("b".into(), vec![lit("x")]),
                ("c".into(), vec![]),
            ]
        );
    }
}
