//! A recursive-descent parser from CQL tokens to the node's statements.

use super::ast::*;
use crate::cql::{tokenize, Token};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let tokens = tokenize(text).map_err(|e| SyntaxError(e.to_string()))?;
    let mut p = Parser {
        t: tokens,
        i: 0,
        markers: Vec::new(),
        depth: 0,
    };
    let statement = p.statement()?;
    p.eat_sym(";");
    if p.i < p.t.len() {
        return Err(p.unexpected("end of statement"));
    }
    Ok(Parsed {
        statement,
        marker_names: p.markers,
    })
}

struct Parser {
    t: Vec<Token>,
    i: usize,
    markers: Vec<Option<String>>,
    /// How deep terms and types are nested where the parser now is.
    depth: usize,
}

/// Terms (`[[[...]]]`) and types (`list<list<...>>`) nest at most this
/// deep: enough for any real statement, and a recursion that cannot
/// exhaust a task's stack.
const MAX_NESTING: usize = 64;

type R<T> = Result<T, SyntaxError>;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.t.get(self.i)
    }

    fn peek_at(&self, k: usize) -> Option<&Token> {
        self.t.get(self.i + k)
    }

    fn unexpected(&self, expecting: &str) -> SyntaxError {
        match self.peek() {
            Some(t) => SyntaxError(format!(
                "line 1:{} mismatched input '{t}' expecting {expecting}",
                self.i
            )),
            None => SyntaxError(format!(
                "line 1:{} mismatched input '<EOF>' expecting {expecting}",
                self.i
            )),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == kw)
    }

    fn is_kw_at(&self, k: usize, kw: &str) -> bool {
        matches!(self.peek_at(k), Some(Token::Ident(w)) if w == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn kw(&mut self, kw: &str) -> R<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&kw.to_uppercase()))
        }
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Token::Sym(x)) if *x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> R<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{s}'")))
        }
    }

    fn ident(&mut self) -> R<String> {
        match self.peek().cloned() {
            Some(Token::Ident(w)) => {
                self.i += 1;
                Ok(w)
            }
            Some(Token::QuotedIdent(w)) => {
                self.i += 1;
                Ok(w)
            }
            _ => Err(self.unexpected("an identifier")),
        }
    }

    fn qualified(&mut self) -> R<QualifiedName> {
        let first = self.ident()?;
        if self.eat_sym(".") {
            Ok(QualifiedName {
                keyspace: Some(first),
                name: self.ident()?,
            })
        } else {
            Ok(QualifiedName {
                keyspace: None,
                name: first,
            })
        }
    }

    fn if_not_exists(&mut self) -> R<bool> {
        if self.is_kw("if") {
            self.i += 1;
            self.kw("not")?;
            self.kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn if_exists(&mut self) -> R<bool> {
        if self.is_kw("if") {
            self.i += 1;
            self.kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn statement(&mut self) -> R<Statement> {
        let Some(Token::Ident(first)) = self.peek().cloned() else {
            return Err(match self.peek() {
                Some(t) => SyntaxError(format!("line 1:0 no viable alternative at input '{t}'")),
                None => SyntaxError("line 0:-1 no viable alternative at input '<EOF>'".into()),
            });
        };
        match first.as_str() {
            "select" => self.select().map(Statement::Select),
            "insert" => self.insert().map(Statement::Insert),
            "update" => self.update().map(Statement::Update),
            "delete" => self.delete().map(Statement::Delete),
            "begin" => self.batch().map(Statement::Batch),
            "use" => {
                self.i += 1;
                Ok(Statement::Use(self.ident()?))
            }
            "truncate" => {
                self.i += 1;
                self.eat_kw("table");
                Ok(Statement::Truncate(self.qualified()?))
            }
            "create" => self.create(),
            "drop" => self.drop(),
            "alter" => self.alter(),
            "describe" | "desc" => self.describe(),
            _ => Err(SyntaxError(format!(
                "line 1:0 no viable alternative at input '{first}'"
            ))),
        }
    }

    // ---- terms -------------------------------------------------------------

    fn marker(&mut self, name: Option<String>) -> Term {
        self.markers.push(name);
        Term::Marker(self.markers.len() - 1)
    }

    /// Runs `f` one nesting level deeper, refusing past `MAX_NESTING`.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Parser) -> R<T>) -> R<T> {
        if self.depth >= MAX_NESTING {
            return Err(SyntaxError(format!(
                "line 1:{} terms or types nested deeper than {MAX_NESTING} levels",
                self.i
            )));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn term(&mut self) -> R<Term> {
        self.nested(Parser::term_here)
    }

    fn term_here(&mut self) -> R<Term> {
        let t = self
            .peek()
            .cloned()
            .ok_or_else(|| self.unexpected("a value"))?;
        self.i += 1;
        Ok(match t {
            Token::Str(s) => Term::Lit(Literal::Str(s)),
            Token::Int(s) => Term::Lit(Literal::Int(s)),
            Token::Float(s) => Term::Lit(Literal::Float(s)),
            Token::Uuid(s) => Term::Lit(Literal::Uuid(s)),
            Token::Blob(b) => Term::Lit(Literal::Blob(b)),
            Token::Marker => self.marker(None),
            Token::NamedMarker(n) => self.marker(Some(n)),
            Token::Sym("-") => match self.peek().cloned() {
                Some(Token::Int(s)) => {
                    self.i += 1;
                    Term::Lit(Literal::Int(format!("-{s}")))
                }
                Some(Token::Float(s)) => {
                    self.i += 1;
                    Term::Lit(Literal::Float(format!("-{s}")))
                }
                _ => return Err(self.unexpected("a number")),
            },
            Token::Sym("[") => {
                let mut items = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        items.push(self.term()?);
                        if self.eat_sym("]") {
                            break;
                        }
                        self.sym(",")?;
                    }
                }
                Term::List(items)
            }
            Token::Sym("(") => {
                let mut items = Vec::new();
                loop {
                    items.push(self.term()?);
                    if self.eat_sym(")") {
                        break;
                    }
                    self.sym(",")?;
                }
                Term::Tuple(items)
            }
            Token::Sym("{") => self.brace_term()?,
            Token::Ident(w) if w == "true" => Term::Lit(Literal::Bool(true)),
            Token::Ident(w) if w == "false" => Term::Lit(Literal::Bool(false)),
            Token::Ident(w) if w == "null" => Term::Lit(Literal::Null),
            Token::Ident(w) if self.is_sym("(") => {
                self.i += 1;
                let mut args = Vec::new();
                if !self.eat_sym(")") {
                    loop {
                        args.push(self.term()?);
                        if self.eat_sym(")") {
                            break;
                        }
                        self.sym(",")?;
                    }
                }
                Term::Call(w, args)
            }
            other => {
                self.i -= 1;
                return Err(SyntaxError(format!(
                    "line 1:{} no viable alternative at input '{other}'",
                    self.i
                )));
            }
        })
    }

    /// After `{`: a set, a map or a UDT literal.
    fn brace_term(&mut self) -> R<Term> {
        if self.eat_sym("}") {
            return Ok(Term::Set(Vec::new()));
        }
        // UDT: `{ident: ...`
        let is_udt = matches!(
            self.peek(),
            Some(Token::Ident(_)) | Some(Token::QuotedIdent(_))
        ) && matches!(self.peek_at(1), Some(Token::Sym(":")))
            && !matches!(self.peek(), Some(Token::Ident(w)) if w == "true" || w == "false" || w == "null");
        if is_udt {
            let mut fields = Vec::new();
            loop {
                let f = self.ident()?;
                self.sym(":")?;
                fields.push((f, self.term()?));
                if self.eat_sym("}") {
                    return Ok(Term::Udt(fields));
                }
                self.sym(",")?;
            }
        }
        let first = self.term()?;
        if self.eat_sym(":") {
            let mut entries = vec![(first, self.term()?)];
            while !self.eat_sym("}") {
                self.sym(",")?;
                let k = self.term()?;
                self.sym(":")?;
                entries.push((k, self.term()?));
            }
            return Ok(Term::Map(entries));
        }
        let mut items = vec![first];
        while !self.eat_sym("}") {
            self.sym(",")?;
            items.push(self.term()?);
        }
        Ok(Term::Set(items))
    }

    // ---- WHERE / IF ----------------------------------------------------------

    fn op(&mut self) -> R<Op> {
        let op = match self.peek() {
            Some(Token::Sym("=")) => Op::Eq,
            Some(Token::Sym("!=")) => Op::Ne,
            Some(Token::Sym("<")) => Op::Lt,
            Some(Token::Sym("<=")) => Op::Le,
            Some(Token::Sym(">")) => Op::Gt,
            Some(Token::Sym(">=")) => Op::Ge,
            Some(Token::Ident(w)) if w == "in" => Op::In,
            Some(Token::Ident(w)) if w == "contains" => {
                if self.is_kw_at(1, "key") {
                    self.i += 1;
                    Op::ContainsKey
                } else {
                    Op::Contains
                }
            }
            _ => return Err(self.unexpected("an operator")),
        };
        self.i += 1;
        Ok(op)
    }

    /// `(a, b)` after `token`: the columns named.
    fn column_list(&mut self) -> R<Vec<String>> {
        self.sym("(")?;
        let mut cols = vec![self.ident()?];
        while self.eat_sym(",") {
            cols.push(self.ident()?);
        }
        self.sym(")")?;
        Ok(cols)
    }

    fn relation(&mut self) -> R<Relation> {
        if self.is_kw("token") && self.peek_at(1) == Some(&Token::Sym("(")) {
            self.i += 1;
            let cols = self.column_list()?;
            let op = self.op()?;
            if !matches!(op, Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                return Err(SyntaxError("token() takes =, <, <=, > or >=".into()));
            }
            let value = RelValue::One(self.term()?);
            return Ok(Relation {
                column: String::new(),
                op,
                value,
                token: Some(cols),
            });
        }
        if self.is_sym("(") {
            return Err(SyntaxError(
                "multi-column relations are not supported by the embedded node".into(),
            ));
        }
        let column = self.ident()?;
        let op = self.op()?;
        let value = if op == Op::In && self.is_sym("(") {
            self.i += 1;
            let mut items = Vec::new();
            if !self.eat_sym(")") {
                loop {
                    items.push(self.term()?);
                    if self.eat_sym(")") {
                        break;
                    }
                    self.sym(",")?;
                }
            }
            RelValue::List(items)
        } else {
            RelValue::One(self.term()?)
        };
        Ok(Relation {
            column,
            op,
            value,
            token: None,
        })
    }

    fn relations(&mut self) -> R<Vec<Relation>> {
        let mut out = vec![self.relation()?];
        while self.eat_kw("and") {
            out.push(self.relation()?);
        }
        Ok(out)
    }

    fn condition(&mut self) -> R<Condition> {
        if !self.is_kw("if") {
            return Ok(Condition::None);
        }
        self.i += 1;
        if self.eat_kw("exists") {
            return Ok(Condition::IfExists);
        }
        if self.is_kw("not") && self.is_kw_at(1, "exists") {
            self.i += 2;
            return Ok(Condition::IfNotExists);
        }
        Ok(Condition::If(self.relations()?))
    }

    fn using(&mut self) -> R<Using> {
        let mut u = Using::default();
        if !self.eat_kw("using") {
            return Ok(u);
        }
        loop {
            if self.eat_kw("ttl") {
                u.ttl = Some(self.term()?);
            } else if self.eat_kw("timestamp") {
                u.timestamp = Some(self.term()?);
            } else {
                return Err(self.unexpected("TTL or TIMESTAMP"));
            }
            if !self.eat_kw("and") {
                return Ok(u);
            }
        }
    }

    // ---- DML -----------------------------------------------------------------

    fn selector(&mut self) -> R<Selector> {
        if let Some(Token::Ident(w)) = self.peek().cloned() {
            if self.peek_at(1) == Some(&Token::Sym("(")) {
                self.i += 2;
                if w == "token" {
                    self.i -= 1;
                    return Ok(Selector::Token(self.column_list()?));
                }
                let s = match w.as_str() {
                    "writetime" => Selector::WriteTime(self.ident()?),
                    "ttl" => Selector::Ttl(self.ident()?),
                    "count" => {
                        if !self.eat_sym("*") {
                            match self.peek() {
                                Some(Token::Int(_)) => self.i += 1,
                                _ => return Err(self.unexpected("'*' or 1")),
                            }
                        }
                        Selector::Count
                    }
                    other => {
                        return Err(SyntaxError(format!(
                            "Unknown function '{other}' in selection clause"
                        )));
                    }
                };
                self.sym(")")?;
                return Ok(s);
            }
        }
        Ok(Selector::Column(self.ident()?))
    }

    fn select(&mut self) -> R<Select> {
        self.kw("select")?;
        if self.is_kw("json") {
            return Err(SyntaxError(
                "SELECT JSON is not supported by the embedded node".into(),
            ));
        }
        let distinct = self.eat_kw("distinct");
        let mut selectors = Vec::new();
        if !self.eat_sym("*") {
            loop {
                let s = self.selector()?;
                let alias = if self.eat_kw("as") {
                    Some(self.ident()?)
                } else {
                    None
                };
                selectors.push((s, alias));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.kw("from")?;
        let table = self.qualified()?;
        let relations = if self.eat_kw("where") {
            self.relations()?
        } else {
            Vec::new()
        };
        let mut order_by = Vec::new();
        if self.eat_kw("order") {
            self.kw("by")?;
            loop {
                let c = self.ident()?;
                let desc = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                order_by.push((c, desc));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let mut per_partition_limit = None;
        if self.is_kw("per") {
            self.i += 1;
            self.kw("partition")?;
            self.kw("limit")?;
            per_partition_limit = Some(self.term()?);
        }
        let limit = if self.eat_kw("limit") {
            Some(self.term()?)
        } else {
            None
        };
        let allow_filtering = if self.eat_kw("allow") {
            self.kw("filtering")?;
            true
        } else {
            false
        };
        Ok(Select {
            table,
            selectors,
            distinct,
            relations,
            order_by,
            limit,
            per_partition_limit,
            allow_filtering,
        })
    }

    fn insert(&mut self) -> R<Insert> {
        self.kw("insert")?;
        self.kw("into")?;
        let table = self.qualified()?;
        if self.is_kw("json") {
            return Err(SyntaxError(
                "INSERT JSON is not supported by the embedded node".into(),
            ));
        }
        self.sym("(")?;
        let mut columns = vec![self.ident()?];
        while self.eat_sym(",") {
            columns.push(self.ident()?);
        }
        self.sym(")")?;
        self.kw("values")?;
        self.sym("(")?;
        let mut values = vec![self.term()?];
        while self.eat_sym(",") {
            values.push(self.term()?);
        }
        self.sym(")")?;
        let condition = if self.is_kw("if") {
            self.i += 1;
            self.kw("not")?;
            self.kw("exists")?;
            Condition::IfNotExists
        } else {
            Condition::None
        };
        let using = self.using()?;
        Ok(Insert {
            table,
            columns,
            values,
            using,
            condition,
        })
    }

    fn assignment(&mut self) -> R<Assignment> {
        let col = self.ident()?;
        if self.eat_sym("[") {
            let k = self.term()?;
            self.sym("]")?;
            self.sym("=")?;
            return Ok(Assignment::SetElement(col, k, self.term()?));
        }
        self.sym("=")?;
        // `c = c + x` / `c = c - x`
        let same_col = matches!(self.peek(), Some(Token::Ident(w)) | Some(Token::QuotedIdent(w)) if *w == col)
            && matches!(
                self.peek_at(1),
                Some(Token::Sym("+")) | Some(Token::Sym("-"))
            );
        if same_col {
            self.i += 1;
            let plus = self.eat_sym("+");
            if !plus {
                self.sym("-")?;
            }
            let t = self.term()?;
            return Ok(if plus {
                Assignment::Add(col, t)
            } else {
                Assignment::Sub(col, t)
            });
        }
        let t = self.term()?;
        if self.eat_sym("+") {
            let c2 = self.ident()?;
            if c2 != col {
                return Err(SyntaxError(format!(
                    "Invalid operation ({col} = {c2} + ...) for column {col}"
                )));
            }
            return Ok(Assignment::Prepend(col, t));
        }
        Ok(Assignment::Set(col, t))
    }

    fn update(&mut self) -> R<Update> {
        self.kw("update")?;
        let table = self.qualified()?;
        let using = self.using()?;
        self.kw("set")?;
        let mut assignments = vec![self.assignment()?];
        while self.eat_sym(",") {
            assignments.push(self.assignment()?);
        }
        self.kw("where")?;
        let relations = self.relations()?;
        let condition = self.condition()?;
        Ok(Update {
            table,
            using,
            assignments,
            relations,
            condition,
        })
    }

    fn delete(&mut self) -> R<Delete> {
        self.kw("delete")?;
        let mut columns = Vec::new();
        if !self.is_kw("from") {
            loop {
                let c = self.ident()?;
                let key = if self.eat_sym("[") {
                    let k = self.term()?;
                    self.sym("]")?;
                    Some(k)
                } else {
                    None
                };
                columns.push((c, key));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.kw("from")?;
        let table = self.qualified()?;
        let using = self.using()?;
        self.kw("where")?;
        let relations = self.relations()?;
        let condition = self.condition()?;
        Ok(Delete {
            table,
            columns,
            using,
            relations,
            condition,
        })
    }

    fn batch(&mut self) -> R<BatchStmt> {
        self.kw("begin")?;
        let kind = if self.eat_kw("unlogged") {
            1
        } else if self.eat_kw("counter") {
            2
        } else {
            0
        };
        self.kw("batch")?;
        let using = self.using()?;
        let mut statements = Vec::new();
        loop {
            if self.is_kw("apply") {
                self.i += 1;
                self.kw("batch")?;
                break;
            }
            let s = match self.peek() {
                Some(Token::Ident(w)) if w == "insert" => Statement::Insert(self.insert()?),
                Some(Token::Ident(w)) if w == "update" => Statement::Update(self.update()?),
                Some(Token::Ident(w)) if w == "delete" => Statement::Delete(self.delete()?),
                _ => return Err(self.unexpected("INSERT, UPDATE, DELETE or APPLY BATCH")),
            };
            statements.push(s);
            self.eat_sym(";");
        }
        Ok(BatchStmt {
            kind,
            using,
            statements,
        })
    }

    // ---- DDL -----------------------------------------------------------------

    fn type_expr(&mut self) -> R<TypeExpr> {
        self.nested(Parser::type_expr_here)
    }

    fn type_expr_here(&mut self) -> R<TypeExpr> {
        let first = self.ident()?;
        if self.eat_sym(".") {
            return Ok(TypeExpr::Udt(QualifiedName {
                keyspace: Some(first),
                name: self.ident()?,
            }));
        }
        if self.eat_sym("<") {
            let mut args = vec![self.type_expr()?];
            while self.eat_sym(",") {
                args.push(self.type_expr()?);
            }
            self.sym(">")?;
            return Ok(TypeExpr::Generic(first, args));
        }
        Ok(TypeExpr::Named(first))
    }

    fn option_value(&mut self) -> R<OptionValue> {
        match self.peek().cloned() {
            Some(Token::Str(s)) => {
                self.i += 1;
                Ok(OptionValue::Str(s))
            }
            Some(Token::Int(s)) | Some(Token::Float(s)) => {
                self.i += 1;
                Ok(OptionValue::Number(s))
            }
            Some(Token::Ident(w)) if w == "true" || w == "false" => {
                self.i += 1;
                Ok(OptionValue::Bool(w == "true"))
            }
            Some(Token::Sym("{")) => {
                self.i += 1;
                let mut m = Vec::new();
                if !self.eat_sym("}") {
                    loop {
                        let k = match self.term()? {
                            Term::Lit(Literal::Str(s)) => s,
                            _ => return Err(SyntaxError("option map keys must be strings".into())),
                        };
                        self.sym(":")?;
                        let v = match self.term()? {
                            Term::Lit(Literal::Str(s))
                            | Term::Lit(Literal::Int(s))
                            | Term::Lit(Literal::Float(s)) => s,
                            Term::Lit(Literal::Bool(b)) => b.to_string(),
                            _ => {
                                return Err(SyntaxError(
                                    "option map values must be literals".into(),
                                ))
                            }
                        };
                        m.push((k, v));
                        if self.eat_sym("}") {
                            break;
                        }
                        self.sym(",")?;
                    }
                }
                Ok(OptionValue::Map(m))
            }
            _ => Err(self.unexpected("an option value")),
        }
    }

    fn options(&mut self, table: Option<&mut CreateTable>) -> R<Vec<(String, OptionValue)>> {
        let mut out = Vec::new();
        let mut table = table;
        loop {
            if self.is_kw("clustering") {
                self.i += 1;
                self.kw("order")?;
                self.kw("by")?;
                self.sym("(")?;
                let mut order = Vec::new();
                loop {
                    let c = self.ident()?;
                    let desc = if self.eat_kw("desc") {
                        true
                    } else {
                        self.kw("asc")?;
                        false
                    };
                    order.push((c, desc));
                    if self.eat_sym(")") {
                        break;
                    }
                    self.sym(",")?;
                }
                match table.as_deref_mut() {
                    Some(t) => t.clustering_order = order,
                    None => {
                        return Err(SyntaxError(
                            "CLUSTERING ORDER is only valid in CREATE TABLE".into(),
                        ))
                    }
                }
            } else if self.is_kw("compact") {
                return Err(SyntaxError("COMPACT STORAGE is not supported".into()));
            } else {
                let name = self.ident()?;
                self.sym("=")?;
                out.push((name, self.option_value()?));
            }
            if !self.eat_kw("and") {
                return Ok(out);
            }
        }
    }

    fn create(&mut self) -> R<Statement> {
        self.kw("create")?;
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            self.kw("with")?;
            let options = self.options(None)?;
            return Ok(Statement::CreateKeyspace {
                name,
                if_not_exists,
                options,
            });
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            let if_not_exists = self.if_not_exists()?;
            let table = self.qualified()?;
            let mut ct = CreateTable {
                table,
                if_not_exists,
                columns: Vec::new(),
                partition_key: Vec::new(),
                clustering: Vec::new(),
                clustering_order: Vec::new(),
                options: Vec::new(),
            };
            self.sym("(")?;
            loop {
                if self.is_kw("primary") {
                    self.i += 1;
                    self.kw("key")?;
                    self.sym("(")?;
                    if self.eat_sym("(") {
                        ct.partition_key.push(self.ident()?);
                        while self.eat_sym(",") {
                            ct.partition_key.push(self.ident()?);
                        }
                        self.sym(")")?;
                    } else {
                        ct.partition_key.push(self.ident()?);
                    }
                    while self.eat_sym(",") {
                        ct.clustering.push(self.ident()?);
                    }
                    self.sym(")")?;
                } else {
                    let name = self.ident()?;
                    let typ = self.type_expr()?;
                    let is_static = self.eat_kw("static");
                    if self.is_kw("primary") {
                        self.i += 1;
                        self.kw("key")?;
                        if !ct.partition_key.is_empty() {
                            return Err(SyntaxError(
                                "Multiple PRIMARY KEYs specifed (exactly one required)".into(),
                            ));
                        }
                        ct.partition_key.push(name.clone());
                    }
                    ct.columns.push(ColumnDecl {
                        name,
                        typ,
                        is_static,
                    });
                }
                if self.eat_sym(")") {
                    break;
                }
                self.sym(",")?;
            }
            if self.eat_kw("with") {
                let opts = self.options(Some(&mut ct))?;
                ct.options = opts;
            }
            return Ok(Statement::CreateTable(ct));
        }
        if self.eat_kw("type") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.qualified()?;
            self.sym("(")?;
            let mut fields = Vec::new();
            loop {
                let f = self.ident()?;
                fields.push((f, self.type_expr()?));
                if self.eat_sym(")") {
                    break;
                }
                self.sym(",")?;
            }
            return Ok(Statement::CreateType {
                name,
                if_not_exists,
                fields,
            });
        }
        Err(SyntaxError(format!(
            "line 1:7 CREATE {} is not supported by the embedded node (KEYSPACE, TABLE and TYPE are)",
            self.peek().map(|t| t.to_string().to_uppercase()).unwrap_or_default()
        )))
    }

    fn drop(&mut self) -> R<Statement> {
        self.kw("drop")?;
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropKeyspace {
                name: self.ident()?,
                if_exists,
            });
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropTable {
                table: self.qualified()?,
                if_exists,
            });
        }
        if self.eat_kw("type") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropType {
                name: self.qualified()?,
                if_exists,
            });
        }
        Err(self.unexpected("KEYSPACE, TABLE or TYPE"))
    }

    fn alter(&mut self) -> R<Statement> {
        self.kw("alter")?;
        if self.eat_kw("keyspace") {
            let name = self.ident()?;
            self.kw("with")?;
            return Ok(Statement::AlterKeyspace {
                name,
                options: self.options(None)?,
            });
        }
        if !(self.eat_kw("table") || self.eat_kw("columnfamily")) {
            return Err(self.unexpected("TABLE or KEYSPACE"));
        }
        let table = self.qualified()?;
        let change = if self.eat_kw("add") {
            let mut cols = Vec::new();
            let paren = self.eat_sym("(");
            loop {
                let name = self.ident()?;
                let typ = self.type_expr()?;
                let is_static = self.eat_kw("static");
                cols.push(ColumnDecl {
                    name,
                    typ,
                    is_static,
                });
                if !(paren && self.eat_sym(",")) {
                    break;
                }
            }
            if paren {
                self.sym(")")?;
            }
            AlterTable::Add(cols)
        } else if self.eat_kw("drop") {
            let mut cols = Vec::new();
            if self.eat_sym("(") {
                loop {
                    cols.push(self.ident()?);
                    if self.eat_sym(")") {
                        break;
                    }
                    self.sym(",")?;
                }
            } else {
                cols.push(self.ident()?);
            }
            AlterTable::Drop(cols)
        } else if self.eat_kw("with") {
            AlterTable::With(self.options(None)?)
        } else {
            return Err(self.unexpected("ADD, DROP or WITH"));
        };
        Ok(Statement::AlterTable { table, change })
    }

    fn describe(&mut self) -> R<Statement> {
        self.i += 1;
        let target = if self.eat_kw("keyspaces") {
            DescribeTarget::Keyspaces
        } else if self.eat_kw("tables") || self.eat_kw("columnfamilies") {
            DescribeTarget::Tables
        } else if self.eat_kw("types") {
            DescribeTarget::Types
        } else if self.eat_kw("cluster") {
            DescribeTarget::Cluster
        } else if self.eat_kw("full") {
            self.kw("schema")?;
            DescribeTarget::Schema
        } else if self.eat_kw("schema") {
            DescribeTarget::Schema
        } else if self.eat_kw("keyspace") {
            DescribeTarget::Keyspace(if self.peek().is_some() && !self.is_sym(";") {
                Some(self.ident()?)
            } else {
                None
            })
        } else if self.eat_kw("table") || self.eat_kw("columnfamily") {
            DescribeTarget::Table(self.qualified()?)
        } else if self.eat_kw("type") {
            DescribeTarget::Type(self.qualified()?)
        } else {
            // DESCRIBE <name>: a keyspace or a table, decided at execution.
            let q = self.qualified()?;
            if q.keyspace.is_none() {
                DescribeTarget::Keyspace(Some(q.name))
            } else {
                DescribeTarget::Table(q)
            }
        };
        Ok(Statement::Describe(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        let deep_list = format!(
            "INSERT INTO t (k, l) VALUES (1, {}1{})",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let deep_type = format!(
            "CREATE TABLE t (k int PRIMARY KEY, v {}int{})",
            "frozen<list<".repeat(50_000),
            ">>".repeat(50_000)
        );
        let deep_call = format!(
            "SELECT * FROM t WHERE k = {}1{}",
            "f(".repeat(100_000),
            ")".repeat(100_000)
        );
        for text in [deep_list, deep_type, deep_call] {
            let e = parse(&text).unwrap_err();
            assert!(e.0.contains("nested deeper than 64"), "{}", e.0);
        }
        let ok = format!(
            "INSERT INTO t (k, l) VALUES (1, {}1{})",
            "[".repeat(30),
            "]".repeat(30)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn parses_the_reference_session() {
        for q in [
            "CREATE KEYSPACE ref WITH replication = {'class':'SimpleStrategy','replication_factor':1}",
            "CREATE TYPE ref.point (x int, y int)",
            "CREATE TABLE ref.t (p text, c int, v text, s text static, l list<int>, m map<text,int>, pt frozen<point>, PRIMARY KEY (p, c))",
            "CREATE TABLE ref.ctr (k text PRIMARY KEY, n counter)",
            "INSERT INTO ref.t (p, c, v, l, m) VALUES ('a', 1, 'one', [1,2], {'k':1}) USING TTL 3600",
            "SELECT p, c, v, writetime(v), ttl(v) FROM ref.t WHERE p = 'a'",
            "SELECT c, v FROM ref.t WHERE p = ? AND c > ?",
            "UPDATE ref.t SET s = 'st' WHERE p = 'a'",
            "INSERT INTO ref.t (p, c, v) VALUES ('a', 1, 'x') IF NOT EXISTS",
            "UPDATE ref.ctr SET n = n + 5 WHERE k = 'k'",
            "ALTER TABLE ref.t ADD extra text",
            "DROP TABLE ref.ctr",
            "BEGIN BATCH INSERT INTO t (a) VALUES (1); UPDATE t SET b = 2 WHERE a = 1; APPLY BATCH",
            "SELECT * FROM system_schema.tables WHERE keyspace_name = 'ref' AND table_name = 't'",
            "CREATE TABLE t2 (a int, b int, c int, PRIMARY KEY ((a, b), c)) WITH CLUSTERING ORDER BY (c DESC) AND comment = 'x'",
            "DELETE m['k'] FROM t WHERE p = 'a' IF v = 'x'",
            "SELECT COUNT(*) FROM t",
            "UPDATE t SET pt = {x: 1, y: 2}, l = [0] + l WHERE p = :p AND c IN ?",
        ] {
            parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn markers_are_numbered_in_order_with_names() {
        let p = parse("SELECT * FROM t WHERE a = :x AND b IN ? LIMIT ?").unwrap();
        assert_eq!(p.marker_names, vec![Some("x".into()), None, None]);
    }

    #[test]
    fn a_typo_is_a_syntax_error_naming_the_word() {
        let e = parse("SELEKT * FROM t").unwrap_err();
        assert!(
            e.0.contains("no viable alternative at input 'selekt'"),
            "{e}"
        );
    }
}
