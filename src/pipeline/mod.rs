//! The request pipeline: what happens to one QUERY, EXECUTE, BATCH,
//! PREPARE or REGISTER a session has read, until its answer. QUERY and
//! EXECUTE share one pipeline (`route`), its stages each a function in its
//! own file:
//!
//! classify (`route`; cached, an EXECUTE inherits its PREPARE's) → resolve
//! tenants and admit (`context`, `routing::admit`) → decide
//! (`routing::decide`, glued in `decide`) → rewrite per cluster
//! (`rewrite`) → fan out (`leg`, one runner for every leg: connect,
//! forward, re-prepare, resend when idempotent, record) → join (`join`) →
//! after (`after`: page pins in `paging`, the shadow compare in `shadow`).
//! BATCH (`batch`) and PREPARE (`prepare`) use the same stages. Errors
//! are typed (`errors`) until the session writes them.
//!
//! What the pipeline keeps across requests lives here too: the prepared
//! map (`prepared`), page pins (`paging`), shadow reads (`shadow`). It must
//! not read or write a client socket (the session does) nor decide routes
//! itself (routing does).

mod after;
mod batch;
mod context;
mod decide;
mod errors;
mod join;
mod leg;
mod mirror;
mod paging;
mod prepare;
mod prepared;
mod request;
mod rewrite;
mod route;
mod shadow;

pub use context::op_class;
pub use errors::{ErrorSource, Failure, RequestError};
pub use paging::PagePins;
pub use prepared::{PreparedEntry, PreparedMap};
pub use route::handle;
pub use shadow::{render_values, MismatchSample, ShadowContext, ShadowReads, ShadowReport};

/// What the pipeline keeps across the requests of every session.
pub struct Statements {
    prepared: PreparedMap,
    classifier: crate::cql::ClassificationCache,
    pages: PagePins,
    shadow: std::sync::Arc<ShadowReads>,
}

impl Statements {
    /// Room for `entries` prepared statements (and as many cached
    /// classifications); `column` is the tenant column, when tenants are
    /// keyed by one; at most `shadow_reads` shadow reads at once.
    pub fn new(entries: usize, column: Option<String>, shadow_reads: usize) -> Statements {
        Statements {
            prepared: PreparedMap::new(entries),
            classifier: crate::cql::ClassificationCache::new(entries, column),
            pages: PagePins::default(),
            shadow: std::sync::Arc::new(ShadowReads::new(shadow_reads)),
        }
    }

    /// The proxy-wide prepared-statement map.
    pub fn prepared(&self) -> &PreparedMap {
        &self.prepared
    }

    /// Classifications of statement texts, cached.
    pub fn classifier(&self) -> &crate::cql::ClassificationCache {
        &self.classifier
    }

    /// Which cluster issued each paging state.
    pub fn pages(&self) -> &PagePins {
        &self.pages
    }

    /// Shadow reads under way and their comparison.
    pub fn shadow(&self) -> &std::sync::Arc<ShadowReads> {
        &self.shadow
    }
}
