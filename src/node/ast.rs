//! The statements the embedded node understands, as the parser produces them.

/// A table (or type) name, keyspace optional.
#[derive(Debug, Clone, PartialEq)]
pub struct QualifiedName {
    pub keyspace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    /// Integer text, sign included.
    Int(String),
    Float(String),
    Uuid(String),
    Blob(Vec<u8>),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Lit(Literal),
    /// Index among all bind markers of the statement.
    Marker(usize),
    Call(String, Vec<Term>),
    List(Vec<Term>),
    /// `{a, b}`; also an empty `{}` (set or map, decided by the column type).
    Set(Vec<Term>),
    Map(Vec<(Term, Term)>),
    /// `{field: value, ...}` for a UDT.
    Udt(Vec<(String, Term)>),
    Tuple(Vec<Term>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
    ContainsKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RelValue {
    One(Term),
    /// `IN (a, b)`; `IN ?` is `One(Marker)` with op `In`.
    List(Vec<Term>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub column: String,
    pub op: Op,
    pub value: RelValue,
    /// `token(a, b) > ?`: the partition key columns named (and `column`
    /// empty).
    pub token: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Column(String),
    WriteTime(String),
    Ttl(String),
    /// `token(a, b)`: the partition key's token.
    Token(Vec<String>),
    Count,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub table: QualifiedName,
    /// Empty means `*`.
    pub selectors: Vec<(Selector, Option<String>)>,
    pub distinct: bool,
    pub relations: Vec<Relation>,
    pub order_by: Vec<(String, bool)>,
    pub limit: Option<Term>,
    pub per_partition_limit: Option<Term>,
    pub allow_filtering: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Using {
    pub ttl: Option<Term>,
    pub timestamp: Option<Term>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    None,
    IfNotExists,
    IfExists,
    If(Vec<Relation>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: QualifiedName,
    pub columns: Vec<String>,
    pub values: Vec<Term>,
    pub using: Using,
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    Set(String, Term),
    /// `c = c + t` (counters, list append, set/map add).
    Add(String, Term),
    /// `c = c - t`.
    Sub(String, Term),
    /// `c = t + c` (list prepend).
    Prepend(String, Term),
    /// `c[k] = t`.
    SetElement(String, Term, Term),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: QualifiedName,
    pub using: Using,
    pub assignments: Vec<Assignment>,
    pub relations: Vec<Relation>,
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub table: QualifiedName,
    /// Columns (and optional element key) to delete; empty deletes rows.
    pub columns: Vec<(String, Option<Term>)>,
    pub using: Using,
    pub relations: Vec<Relation>,
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchStmt {
    pub kind: u8,
    pub using: Using,
    pub statements: Vec<Statement>,
}

/// A column type as written (`frozen<map<text, int>>`, `point`).
#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    Named(String),
    Generic(String, Vec<TypeExpr>),
    Udt(QualifiedName),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDecl {
    pub name: String,
    pub typ: TypeExpr,
    pub is_static: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub table: QualifiedName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDecl>,
    pub partition_key: Vec<String>,
    pub clustering: Vec<String>,
    pub clustering_order: Vec<(String, bool)>,
    pub options: Vec<(String, OptionValue)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Str(String),
    Number(String),
    Bool(bool),
    Map(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterTable {
    Add(Vec<ColumnDecl>),
    Drop(Vec<String>),
    With(Vec<(String, OptionValue)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DescribeTarget {
    Keyspaces,
    Keyspace(Option<String>),
    Tables,
    Table(QualifiedName),
    Types,
    Type(QualifiedName),
    Schema,
    Cluster,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select(Select),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Batch(BatchStmt),
    Use(String),
    CreateKeyspace {
        name: String,
        if_not_exists: bool,
        options: Vec<(String, OptionValue)>,
    },
    AlterKeyspace {
        name: String,
        options: Vec<(String, OptionValue)>,
    },
    DropKeyspace {
        name: String,
        if_exists: bool,
    },
    CreateTable(CreateTable),
    AlterTable {
        table: QualifiedName,
        change: AlterTable,
    },
    DropTable {
        table: QualifiedName,
        if_exists: bool,
    },
    CreateType {
        name: QualifiedName,
        if_not_exists: bool,
        fields: Vec<(String, TypeExpr)>,
    },
    DropType {
        name: QualifiedName,
        if_exists: bool,
    },
    Truncate(QualifiedName),
    Describe(DescribeTarget),
}

/// A parsed statement with the names of its bind markers (`?` has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub statement: Statement,
    pub marker_names: Vec<Option<String>>,
}
