//! The memory pool of Cairn's sessions: DataFusion's own, except that a
//! `RepartitionExec` never spills.
//!
//! DataFusion 55 sends a batch that a `RepartitionExec` cannot reserve
//! memory for to a spill file, and that path can stop a query for good:
//! when two of its inputs spill at once, the reader waits on the older file
//! while the batch it needs is in the newer one, and every thread parks
//! (apache/datafusion#24883, fixed after 55.2). The pool below grants a
//! repartition's buffers whatever the limit, so they stay in memory; what
//! they hold is still counted, so the operators that spill safely (sorts,
//! aggregates, joins) spill sooner. The test
//! `known_difference_datafusion_repartition_deadlocks_when_it_spills` fails
//! once DataFusion's repartition spills safely: then this pool can go.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// A [`MemoryPool`] that lends `RepartitionExec`'s buffers memory past the
/// limit instead of letting them spill, and passes everything else to the
/// pool it wraps.
#[derive(Debug)]
pub struct KeepRepartitionInMemory {
    inner: Arc<dyn MemoryPool>,
}

impl KeepRepartitionInMemory {
    /// `pool`, wrapped once (a pool already wrapped is returned as it is).
    pub fn around(pool: Arc<dyn MemoryPool>) -> Arc<dyn MemoryPool> {
        if pool.is::<Self>() {
            pool
        } else {
            Arc::new(Self { inner: pool })
        }
    }
}

/// `runtime`, with its memory pool wrapped in [`KeepRepartitionInMemory`].
pub fn keeping_repartition_in_memory(runtime: Arc<RuntimeEnv>) -> Result<Arc<RuntimeEnv>> {
    if runtime.memory_pool.is::<KeepRepartitionInMemory>() {
        return Ok(runtime);
    }
    RuntimeEnvBuilder::from_runtime_env(&runtime)
        .with_memory_pool(KeepRepartitionInMemory::around(Arc::clone(
            &runtime.memory_pool,
        )))
        .build_arc()
}

/// The reservation of a repartition's output buffers: the one that spills
/// when refused (its merge reservation cannot spill and errors instead).
fn is_repartition_buffer(consumer: &MemoryConsumer) -> bool {
    consumer.can_spill() && consumer.name().starts_with("RepartitionExec[")
}

impl MemoryPool for KeepRepartitionInMemory {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if is_repartition_buffer(reservation.consumer()) {
            self.inner.grow(reservation, additional);
            return Ok(());
        }
        self.inner.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

impl fmt::Display for KeepRepartitionInMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    use super::*;

    #[test]
    fn repartition_buffers_grow_past_the_limit_and_count() {
        let pool = KeepRepartitionInMemory::around(Arc::new(GreedyMemoryPool::new(100)));
        let buffer = MemoryConsumer::new("RepartitionExec[0]")
            .with_can_spill(true)
            .register(&pool);
        buffer
            .try_grow(150)
            .expect("a repartition buffer is never refused");
        assert_eq!(pool.reserved(), 150);

        let sorter = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        assert!(sorter.try_grow(1).is_err(), "the rest keeps the limit");
        let merge = MemoryConsumer::new("RepartitionExec[Merge 0]").register(&pool);
        assert!(
            merge.try_grow(1).is_err(),
            "a merge reservation errors, as before"
        );

        drop(buffer);
        assert_eq!(pool.reserved(), 0);
        sorter.try_grow(100).expect("freed memory is lent again");
    }

    #[test]
    fn a_pool_is_wrapped_once() {
        let pool = KeepRepartitionInMemory::around(Arc::new(GreedyMemoryPool::new(100)));
        let again = KeepRepartitionInMemory::around(Arc::clone(&pool));
        assert!(Arc::ptr_eq(&pool, &again));
        let inner = &again
            .downcast_ref::<KeepRepartitionInMemory>()
            .expect("Cairn's pool")
            .inner;
        assert!(inner.is::<GreedyMemoryPool>());
    }
}
