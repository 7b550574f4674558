//! Paged reads across policy changes: the proxy remembers which cluster
//! issued each paging state it handed out, so a continuation page goes
//! there whatever the policy says now.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::routing::ClusterId;

/// Paging states handed out lately (proxy-wide: a driver may ask for the
/// next page on another connection), and the cluster that issued each: a
/// continuation page goes there whatever the policy says now. Bounded; the
/// oldest go first.
#[derive(Default)]
pub struct PagePins {
    inner: Mutex<(HashMap<Bytes, ClusterId>, std::collections::VecDeque<Bytes>)>,
}

/// Paging states remembered.
const PINNED_PAGES: usize = 10_000;

impl PagePins {
    pub fn pin(&self, paging_state: Bytes, cluster: ClusterId) {
        let mut g = self.inner.lock();
        let (map, order) = &mut *g;
        if map.insert(paging_state.clone(), cluster).is_none() {
            order.push_back(paging_state);
            if order.len() > PINNED_PAGES {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    pub fn pinned(&self, paging_state: &Bytes) -> Option<ClusterId> {
        self.inner.lock().0.get(paging_state).copied()
    }
}
