//! Fairness between tenants inside the operator. Every NAT reconcile speaks
//! to the API server as the operator's one ServiceAccount, so API Priority
//! and Fairness cannot tell one tenant's burst from another tenant's single
//! rule. Here each namespace may have only a few reconciles in flight: a
//! burst queues behind itself, and another tenant's rule is judged at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reconciles of one namespace in flight at once.
pub const PER_NAMESPACE: usize = 4;

/// One semaphore per namespace, made on first use.
#[derive(Default)]
pub struct Fairness {
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Fairness {
    /// Waits for one of `namespace`'s slots; held until the permit drops.
    pub async fn slot(&self, namespace: &str) -> OwnedSemaphorePermit {
        let sem = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // Forget namespaces with nothing in flight, so the map stays small.
            slots.retain(|_, s| s.available_permits() < PER_NAMESPACE);
            slots
                .entry(namespace.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_NAMESPACE)))
                .clone()
        };
        sem.acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_busy_namespace_does_not_hold_up_another() {
        let f = Fairness::default();
        let held: Vec<_> = futures::future::join_all((0..PER_NAMESPACE).map(|_| f.slot("a"))).await;
        // a is full: one more waits ...
        let more = tokio::time::timeout(Duration::from_millis(50), f.slot("a")).await;
        assert!(more.is_err(), "a's burst is bounded");
        // ... while b gets a slot at once.
        let b = tokio::time::timeout(Duration::from_millis(50), f.slot("b")).await;
        assert!(b.is_ok(), "another namespace is not held up");
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), f.slot("a"))
                .await
                .is_ok()
        );
    }
}
