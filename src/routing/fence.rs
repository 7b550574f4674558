//! The read-only fence: when a tenant stops accepting writes, the change
//! returns only once every write admitted under the previous policy has
//! finished upstream (answered, or its connection closed).
//!
//! Tenant writes are counted in two generations of per-thread counters (no
//! lock, no map). A write registers in the current generation *before* it
//! takes the policy snapshot that judges it, and leaves when its clusters
//! have answered. A policy change installs the new snapshot, then starts a
//! new generation and waits for the old one to drain. With sequentially
//! consistent fences on both sides, a write either registered in the old
//! generation (and is waited for) or saw the new snapshot (and was judged by
//! it). Writes admitted after the change never delay the wait.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

/// Counters per generation; threads are spread over them.
const STRIPES: usize = 16;

pub struct WriteFence {
    generation: AtomicU64,
    counts: [Box<[AtomicU64]>; 2],
    /// One grace period at a time, so generations alternate cleanly.
    grace: tokio::sync::Mutex<()>,
}

impl Default for WriteFence {
    fn default() -> Self {
        let stripes = || (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        WriteFence {
            generation: AtomicU64::new(0),
            counts: [stripes(), stripes()],
            grace: tokio::sync::Mutex::new(()),
        }
    }
}

/// A write under way; dropping it marks the write finished.
pub struct Admitted<'a> {
    counter: &'a AtomicU64,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES;
    }
    SLOT.with(|s| *s)
}

impl WriteFence {
    /// Counts a tenant's write as under way. Take the policy snapshot that
    /// judges the write *after* this.
    pub fn enter(&self) -> Admitted<'_> {
        let s = stripe();
        loop {
            let g = self.generation.load(Ordering::SeqCst);
            let counter = &self.counts[(g & 1) as usize][s];
            counter.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.generation.load(Ordering::SeqCst) == g {
                return Admitted { counter };
            }
            // A grace period started meanwhile: register in the new one.
            counter.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits until every tenant write admitted before this call has
    /// finished (call after installing the new snapshot). False when
    /// `limit` passed first.
    pub async fn grace_period(&self, limit: Duration) -> bool {
        let _one = self.grace.lock().await;
        fence(Ordering::SeqCst);
        let old = self.generation.fetch_add(1, Ordering::SeqCst);
        let counts = &self.counts[(old & 1) as usize];
        let deadline = tokio::time::Instant::now() + limit;
        while counts.iter().map(|c| c.load(Ordering::SeqCst)).sum::<u64>() != 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }
}

/// Tenants whose writes `after` refuses and `before` accepted.
pub fn newly_fenced(
    before: &crate::routing::RoutePolicy,
    after: &crate::routing::RoutePolicy,
) -> Vec<String> {
    let mut t: Vec<String> = after
        .tenants
        .iter()
        .filter(|(name, r)| {
            r.status != crate::config::TenantStatus::ReadWrite
                && before.for_tenant(Some(name)).status == crate::config::TenantStatus::ReadWrite
        })
        .map(|(name, _)| name.clone())
        .collect();
    t.sort();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_grace_period_waits_for_the_writes_admitted_before_it() {
        let f = WriteFence::default();
        assert!(f.grace_period(Duration::from_millis(10)).await);
        let w = f.enter();
        assert!(!f.grace_period(Duration::from_millis(20)).await);
        drop(w);
        assert!(f.grace_period(Duration::from_millis(10)).await);
        // A write admitted while a grace period waits does not hold it up.
        let old = f.enter();
        let waiting = f.grace_period(Duration::from_secs(5));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut waiting)
                .await
                .is_err(),
            "waits for the older write"
        );
        let new = f.enter();
        drop(old);
        assert!(waiting.await, "done although a newer write is under way");
        drop(new);
    }
}
