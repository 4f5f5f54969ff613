//! The cache of Flex's long-term signing keys (`/flex/v2/public-keys/{kid}`), per environment and `kid`.
//!
//! - Keys are kept without TTL, as the official SDKs do; rotation is handled by [`KeyCache::refresh`]: when a
//!   signature fails with a cached key, that key is replaced by one fetch and verification is retried once.
//! - Fetches are single-flight: concurrent lookups of the same environment + kid wait on one request, and
//!   concurrent refreshes of the same stale key share one refetch.
//! - A failed fetch leaves nothing behind, and the cache holds at most [`KeyCache::MAX_ENTRIES`] keys (an
//!   attacker choosing kids cannot grow it without bound).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use key_provider::PublicKey;
use tokio::sync::OnceCell;

use crate::error::FlexError;

type Slot = Arc<OnceCell<Arc<PublicKey>>>;

/// Flex public keys by environment and `kid`. Share one cache between clients with
/// [`crate::FlexClientBuilder::key_cache`].
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<(String, String), Slot>>,
}

impl KeyCache {
    /// Most keys held; past this the cache is emptied before a new key is added.
    pub const MAX_ENTRIES: usize = 256;

    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys held (fetched successfully).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().values().filter(|s| s.initialized()).count()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        // The map stays consistent whatever panicked while holding the lock: every update is a single insert.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, environment: &str, kid: &str) -> Slot {
        let mut entries = self.lock();
        let key = (environment.to_owned(), kid.to_owned());
        if !entries.contains_key(&key) && entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.entry(key).or_default().clone()
    }

    fn forget_if_empty(&self, environment: &str, kid: &str, slot: &Slot) {
        let mut entries = self.lock();
        let key = (environment.to_owned(), kid.to_owned());
        if entries
            .get(&key)
            .is_some_and(|s| Arc::ptr_eq(s, slot) && !s.initialized())
        {
            entries.remove(&key);
        }
    }

    /// The key for `environment` + `kid`, fetched with `fetch` when not cached. Returns the key and whether
    /// this call started the fetch (a freshly fetched key is not worth refetching).
    pub(crate) async fn get<F, Fut>(
        &self,
        environment: &str,
        kid: &str,
        fetch: F,
    ) -> Result<(Arc<PublicKey>, bool), FlexError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PublicKey, FlexError>>,
    {
        let slot = self.slot(environment, kid);
        let mut fetched_here = false;
        let result = slot
            .get_or_try_init(|| {
                fetched_here = true;
                async move { fetch().await.map(Arc::new) }
            })
            .await
            .cloned();
        match result {
            Ok(key) => Ok((key, fetched_here)),
            Err(e) => {
                self.forget_if_empty(environment, kid, &slot);
                Err(e)
            }
        }
    }

    /// Replaces `stale` (the key a signature just failed with) by a fresh fetch. If another task already
    /// replaced it, that task's fetch is shared instead of fetching again.
    pub(crate) async fn refresh<F, Fut>(
        &self,
        environment: &str,
        kid: &str,
        stale: &Arc<PublicKey>,
        fetch: F,
    ) -> Result<Arc<PublicKey>, FlexError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PublicKey, FlexError>>,
    {
        let slot = {
            let mut entries = self.lock();
            let key = (environment.to_owned(), kid.to_owned());
            let entry = entries.entry(key).or_default();
            if entry.get().is_some_and(|k| Arc::ptr_eq(k, stale)) {
                *entry = Slot::default();
            }
            entry.clone()
        };
        let result = slot
            .get_or_try_init(|| async move { fetch().await.map(Arc::new) })
            .await
            .cloned();
        if result.is_err() {
            self.forget_if_empty(environment, kid, &slot);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn key(byte: u8) -> PublicKey {
        let mut n = vec![0xC5; 256];
        n[255] = byte | 1;
        PublicKey::rsa(&n, &[1, 0, 1]).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_gets_share_one_fetch_and_refreshes_share_one_refetch() {
        let cache = Arc::new(KeyCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("env", "3g", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(key(1))
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut started_here = 0;
        let mut first = None;
        for t in tasks {
            let (k, here) = t.await.unwrap();
            started_here += usize::from(here);
            first.get_or_insert(k);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(started_here, 1);
        let stale = first.unwrap();

        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches, stale) = (cache.clone(), fetches.clone(), stale.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .refresh("env", "3g", &stale, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(key(3))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), key(3));
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "one refetch for all stale holders"
        );
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn failed_fetch_is_not_cached_and_environments_are_separate() {
        let cache = KeyCache::new();
        let err = cache
            .get("env", "zz", || async {
                Err(FlexError::Config("boom".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, FlexError::Config(_)));
        assert!(cache.is_empty());
        let (a, _) = cache
            .get("test", "3g", || async { Ok(key(5)) })
            .await
            .unwrap();
        let (b, here) = cache
            .get("production", "3g", || async { Ok(key(7)) })
            .await
            .unwrap();
        assert!(here);
        assert_ne!(a, b);
        assert_eq!(cache.len(), 2);
    }
}
