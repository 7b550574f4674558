//! A proxy-wide bound in bytes, shared by connections: what partly received
//! large frames may hold (the codec's), what requests read and not yet
//! answered may hold (the session's). A share that does not fit is refused
//! and counted; the caller answers OVERLOADED.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    held: AtomicUsize,
    refused: AtomicU64,
}

/// A share of a budget, given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            limit,
            held: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Shares refused because the budget was spent.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes, or refuses (counted) when they do not fit; the
    /// caller gives them back with `release`.
    pub fn try_hold(&self, n: usize) -> bool {
        let held = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok();
        if !held {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    pub fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// `try_hold`, given back when the share is dropped.
    pub fn hold(self: &Arc<Self>, n: usize) -> Option<Held> {
        self.try_hold(n).then(|| Held {
            budget: self.clone(),
            bytes: n,
        })
    }
}
