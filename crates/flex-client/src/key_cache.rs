//! The cache of Flex's long-term signing keys (`/flex/v2/public-keys/{kid}`), per environment and `kid`.
//!
//! - Keys are kept without TTL, as the official SDKs do. A key that has verified signatures stays until a
//!   replacement has verified one too: when a signature fails with it, the key is fetched again (key rotation
//!   under the same kid), and a different key from that fetch is only a *candidate*, tried on the failing
//!   token and later ones, and taken in place of the old key once it verifies a signature. A forged token
//!   (the real kid, a bad signature) therefore never evicts the good key, and a failed refetch leaves it in
//!   place.
//! - At most one fetch per environment + kid per [`KeyCache::refetch_cooldown`] (default
//!   [`KeyCache::DEFAULT_REFETCH_COOLDOWN`]): a signature failure inside the cooldown of the last fetch is
//!   judged with the keys already held, without a request. A thousand forged tokens cost at most one fetch.
//! - Fetches are single-flight: concurrent lookups and refetches of the same environment + kid wait on one
//!   request and share its result, success or failure.
//! - A kid the key endpoint says it does not know (HTTP 400, 404 or 410) is remembered for the cooldown, at most
//!   [`KeyCache::MAX_UNKNOWN`] of them (the oldest forgotten first); other failures (network, 5xx, garbage)
//!   are not remembered, so the next lookup asks again.
//! - At most [`KeyCache::MAX_ENTRIES`] keys are held; past that the least recently used one is forgotten.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use key_provider::PublicKey;
use tokio::sync::OnceCell;

use crate::error::FlexError;

/// Why a key could not be had: what the fetch reported, kept so that every caller sharing a fetch (or
/// asking for a kid remembered as unknown) gets the same error.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// [`FlexError::KeyFetch`].
    KeyFetch {
        kid: String,
        environment: String,
        reason: String,
    },
    /// [`FlexError::WeakKey`].
    WeakKey { role: String, found: String },
}

impl Failure {
    /// The failure of a fetch from the error it returned.
    pub(crate) fn from_error(error: FlexError, kid: &str, environment: &str) -> Self {
        match error {
            FlexError::KeyFetch {
                kid,
                environment,
                reason,
            } => Self::KeyFetch {
                kid,
                environment,
                reason,
            },
            FlexError::WeakKey { role, found } => Self::WeakKey { role, found },
            other => Self::KeyFetch {
                kid: crate::error::sanitize(kid),
                environment: environment.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    fn to_error(&self) -> FlexError {
        match self.clone() {
            Self::KeyFetch {
                kid,
                environment,
                reason,
            } => FlexError::KeyFetch {
                kid,
                environment,
                reason,
            },
            Self::WeakKey { role, found } => FlexError::WeakKey { role, found },
        }
    }

    fn remembered(&self, cooldown: Duration) -> FlexError {
        match self.to_error() {
            FlexError::KeyFetch {
                kid,
                environment,
                reason,
            } => FlexError::KeyFetch {
                kid,
                environment,
                reason: format!(
                    "{reason} (answered shortly before; not asked again for {} s)",
                    cooldown.as_secs()
                ),
            },
            other => other,
        }
    }
}

/// A failed fetch: why, and whether the answer said that the key endpoint does not know the kid.
#[derive(Debug)]
pub(crate) struct FetchFailure {
    pub(crate) failure: Failure,
    pub(crate) unknown_kid: bool,
}

type Id = (String, String);
type Outcome = Result<Arc<PublicKey>, Failure>;
/// One fetch, shared by every caller that waits for it.
type Flight = Arc<OnceCell<Outcome>>;

struct Slot {
    /// The key that verified a signature (or the first one fetched, before any did).
    current: Option<Arc<PublicKey>>,
    /// A key fetched since, different from `current`, that has not verified anything yet.
    candidate: Option<Arc<PublicKey>>,
    /// When the last fetch (successful or not) finished.
    last_fetch: Option<Instant>,
    /// When `current` was last handed out, for eviction.
    last_used: Instant,
    /// The fetch in progress, if any.
    flight: Option<Flight>,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            current: None,
            candidate: None,
            last_fetch: None,
            last_used: now,
            flight: None,
        }
    }

    fn flight(&mut self) -> Flight {
        self.flight.get_or_insert_with(Flight::default).clone()
    }
}

/// A kid the key endpoint said it does not know.
struct Unknown {
    at: Instant,
    failure: Failure,
}

#[derive(Default)]
struct State {
    slots: HashMap<Id, Slot>,
    unknown: HashMap<Id, Unknown>,
}

/// Flex public keys by environment and `kid`. Share one cache between clients with
/// [`crate::FlexClientBuilder::key_cache`].
pub struct KeyCache {
    cooldown: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("KeyCache")
            .field("refetch_cooldown", &self.cooldown)
            .field(
                "keys",
                &state.slots.values().filter(|s| s.current.is_some()).count(),
            )
            .field("unknown_kids", &state.unknown.len())
            .finish()
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_refetch_cooldown(Self::DEFAULT_REFETCH_COOLDOWN)
    }
}

impl KeyCache {
    /// Most keys held; past this the least recently used key is forgotten.
    pub const MAX_ENTRIES: usize = 256;

    /// Most kids remembered as unknown to the key endpoint; past this the oldest is forgotten.
    pub const MAX_UNKNOWN: usize = 1024;

    /// Default for [`KeyCache::refetch_cooldown`].
    pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

    /// An empty cache with the default refetch cooldown.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache that fetches a kid at most once per `cooldown` (and remembers an unknown kid that
    /// long). A short cooldown lets a key rotated under the same kid be picked up sooner; a forged token
    /// can then cost a fetch that much more often.
    #[must_use]
    pub fn with_refetch_cooldown(cooldown: Duration) -> Self {
        Self {
            cooldown,
            state: Mutex::default(),
        }
    }

    /// The time after a fetch of a kid during which it is not fetched again.
    #[must_use]
    pub fn refetch_cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Number of keys held (fetched successfully).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock()
            .slots
            .values()
            .filter(|s| s.current.is_some())
            .count()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key, and every kid remembered as unknown.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.slots.clear();
        state.unknown.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update below leaves the maps consistent at each step, whatever panicked holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(environment: &str, kid: &str) -> Id {
        (environment.to_owned(), kid.to_owned())
    }

    /// The key for `environment` + `kid`, fetched with `fetch` when none is held (unless the kid was
    /// remembered as unknown).
    pub(crate) async fn get<F, Fut>(
        &self,
        environment: &str,
        kid: &str,
        fetch: F,
    ) -> Result<Arc<PublicKey>, FlexError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PublicKey, FetchFailure>>,
    {
        let id = Self::id(environment, kid);
        let flight = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(slot) = state.slots.get_mut(&id) {
                if let Some(key) = &slot.current {
                    slot.last_used = now;
                    return Ok(key.clone());
                }
            }
            if let Some(unknown) = state.unknown.get(&id) {
                if now.duration_since(unknown.at) < self.cooldown {
                    return Err(unknown.failure.remembered(self.cooldown));
                }
            }
            state
                .slots
                .entry(id.clone())
                .or_insert_with(|| Slot::new(now))
                .flight()
        };
        self.fly(&id, &flight, fetch)
            .await
            .map_err(|f| f.to_error())
    }

    /// Another key to try for `environment` + `kid` after every key in `tried` failed to verify a signature:
    /// a candidate fetched earlier, the key another task has since confirmed, or — outside the cooldown of the
    /// last fetch — a fresh fetch. `None` when there is nothing new to try.
    pub(crate) async fn another<F, Fut>(
        &self,
        environment: &str,
        kid: &str,
        tried: &[Arc<PublicKey>],
        fetch: F,
    ) -> Result<Option<Arc<PublicKey>>, FlexError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PublicKey, FetchFailure>>,
    {
        let id = Self::id(environment, kid);
        let flight = {
            let mut state = self.lock();
            let now = Instant::now();
            let slot = state
                .slots
                .entry(id.clone())
                .or_insert_with(|| Slot::new(now));
            let untried = [&slot.current, &slot.candidate]
                .into_iter()
                .flatten()
                .find(|k| !tried.contains(k));
            if let Some(key) = untried {
                return Ok(Some(key.clone()));
            }
            match &slot.flight {
                Some(flight) => flight.clone(),
                None if slot
                    .last_fetch
                    .is_some_and(|at| now.duration_since(at) < self.cooldown) =>
                {
                    return Ok(None);
                }
                None => slot.flight(),
            }
        };
        match self.fly(&id, &flight, fetch).await {
            Ok(key) if !tried.contains(&key) => Ok(Some(key)),
            Ok(_) => Ok(None),
            Err(f) => Err(f.to_error()),
        }
    }

    /// `key` verified a signature for `environment` + `kid`: if it was the candidate, it replaces the key held.
    pub(crate) fn confirm(&self, environment: &str, kid: &str, key: &Arc<PublicKey>) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(&Self::id(environment, kid)) {
            if slot.candidate.as_ref() == Some(key) {
                slot.current = slot.candidate.take();
            }
            slot.last_used = Instant::now();
        }
    }

    /// Runs `fetch` as `flight`, unless another caller already is (then waits for its result).
    async fn fly<F, Fut>(&self, id: &Id, flight: &Flight, fetch: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PublicKey, FetchFailure>>,
    {
        flight
            .get_or_init(|| async {
                let result = fetch().await;
                self.land(id, flight, result)
            })
            .await
            .clone()
    }

    /// Records the result of a fetch.
    fn land(&self, id: &Id, flight: &Flight, result: Result<PublicKey, FetchFailure>) -> Outcome {
        let mut state = self.lock();
        let now = Instant::now();
        let slot = state
            .slots
            .entry(id.clone())
            .or_insert_with(|| Slot::new(now));
        if slot.flight.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)) {
            slot.flight = None;
        }
        slot.last_fetch = Some(now);
        match result {
            Ok(key) => {
                let key = Arc::new(key);
                let outcome = match &slot.current {
                    None => {
                        slot.current = Some(key.clone());
                        slot.last_used = now;
                        key
                    }
                    Some(current) if *current == key => {
                        // The endpoint still serves the key held: whatever failed was not signed with a newer one.
                        slot.candidate = None;
                        current.clone()
                    }
                    Some(_) => {
                        slot.candidate = Some(key.clone());
                        key
                    }
                };
                state.unknown.remove(id);
                self.evict(&mut state, id);
                Ok(outcome)
            }
            Err(FetchFailure {
                failure,
                unknown_kid,
            }) => {
                let holds_nothing = slot.current.is_none() && slot.candidate.is_none();
                if holds_nothing && slot.flight.is_none() {
                    state.slots.remove(id);
                }
                if holds_nothing && unknown_kid {
                    self.remember_unknown(&mut state, id, now, failure.clone());
                }
                Err(failure)
            }
        }
    }

    /// Forgets the least recently used key while more than [`KeyCache::MAX_ENTRIES`] are held (never `keep`'s,
    /// never one being fetched).
    fn evict(&self, state: &mut State, keep: &Id) {
        loop {
            let held = state.slots.values().filter(|s| s.current.is_some()).count();
            if held <= Self::MAX_ENTRIES {
                return;
            }
            let oldest = state
                .slots
                .iter()
                .filter(|(id, s)| *id != keep && s.current.is_some() && s.flight.is_none())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    state.slots.remove(&id);
                }
                None => return,
            }
        }
    }

    fn remember_unknown(&self, state: &mut State, id: &Id, now: Instant, failure: Failure) {
        if !state.unknown.contains_key(id) && state.unknown.len() >= Self::MAX_UNKNOWN {
            let cooldown = self.cooldown;
            state
                .unknown
                .retain(|_, u| now.duration_since(u.at) < cooldown);
            if state.unknown.len() >= Self::MAX_UNKNOWN {
                let oldest = state
                    .unknown
                    .iter()
                    .min_by_key(|(_, u)| u.at)
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    state.unknown.remove(&oldest);
                }
            }
        }
        state
            .unknown
            .insert(id.clone(), Unknown { at: now, failure });
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

    fn failure(reason: &str, unknown_kid: bool) -> FetchFailure {
        FetchFailure {
            failure: Failure::KeyFetch {
                kid: "zz".into(),
                environment: "env".into(),
                reason: reason.into(),
            },
            unknown_kid,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_gets_share_one_fetch_and_refetches_share_one_fetch() {
        let cache = Arc::new(KeyCache::with_refetch_cooldown(Duration::ZERO));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("env", "3g", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(key(1))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), key(1));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let stale = cache
            .get("env", "3g", || async { unreachable!() })
            .await
            .unwrap();

        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches, stale) = (cache.clone(), fetches.clone(), stale.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .another("env", "3g", &[stale], || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(key(3))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().as_deref(), Some(&key(3)));
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "one refetch for all holders of the failing key"
        );
        // Not confirmed yet: the key held is still the old one.
        let held = cache
            .get("env", "3g", || async { unreachable!() })
            .await
            .unwrap();
        assert_eq!(*held, key(1));
        cache.confirm("env", "3g", &Arc::new(key(3)));
        let held = cache
            .get("env", "3g", || async { unreachable!() })
            .await
            .unwrap();
        assert_eq!(*held, key(3));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn the_cooldown_limits_refetches_and_a_failed_refetch_keeps_the_key() {
        let cache = KeyCache::with_refetch_cooldown(Duration::from_secs(3600));
        let good = cache
            .get("env", "3g", || async { Ok(key(1)) })
            .await
            .unwrap();
        // Inside the cooldown of that fetch: nothing new to try, and no fetch.
        let next = cache
            .another("env", "3g", std::slice::from_ref(&good), || async {
                unreachable!()
            })
            .await
            .unwrap();
        assert_eq!(next, None);

        let cache = KeyCache::with_refetch_cooldown(Duration::ZERO);
        let good = cache
            .get("env", "3g", || async { Ok(key(1)) })
            .await
            .unwrap();
        let err = cache
            .another("env", "3g", std::slice::from_ref(&good), || async {
                Err(failure("HTTP 503", false))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, FlexError::KeyFetch { .. }));
        let held = cache
            .get("env", "3g", || async { unreachable!() })
            .await
            .unwrap();
        assert_eq!(held, good, "a failed refetch leaves the good key");
        // The endpoint serves the same key again (a forged token): nothing new to try, the key stays.
        let next = cache
            .another("env", "3g", std::slice::from_ref(&good), || async {
                Ok(key(1))
            })
            .await
            .unwrap();
        assert_eq!(next, None);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn unknown_kids_are_remembered_within_bounds_and_other_failures_are_not() {
        let cache = KeyCache::with_refetch_cooldown(Duration::from_secs(3600));
        let fetches = AtomicUsize::new(0);
        for _ in 0..3 {
            let err = cache
                .get("env", "zz", || async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    Err(failure("HTTP 404", true))
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, FlexError::KeyFetch { reason, .. } if reason.contains("HTTP 404")),
                "{err:?}"
            );
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            let _ = cache
                .get("env", "yy", || async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    Err(failure("timed out", false))
                })
                .await
                .unwrap_err();
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            3,
            "a timeout is not remembered"
        );
        assert!(cache.is_empty());
        for i in 0..(KeyCache::MAX_UNKNOWN + 100) {
            let _ = cache
                .get("env", &format!("k{i}"), || async {
                    Err(failure("HTTP 404", true))
                })
                .await;
        }
        assert_eq!(cache.lock().unknown.len(), KeyCache::MAX_UNKNOWN);
        assert!(cache.lock().slots.is_empty());
    }

    #[tokio::test]
    async fn environments_are_separate_and_the_least_recently_used_key_goes_first() {
        let cache = KeyCache::new();
        let a = cache
            .get("test", "3g", || async { Ok(key(5)) })
            .await
            .unwrap();
        let b = cache
            .get("production", "3g", || async { Ok(key(7)) })
            .await
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(cache.len(), 2);
        for i in 0..KeyCache::MAX_ENTRIES {
            // Keep "test"/"3g" in use; "production"/"3g" is then the least recently used.
            cache
                .get("test", "3g", || async { unreachable!() })
                .await
                .unwrap();
            cache
                .get("env", &format!("k{i}"), || async { Ok(key(9)) })
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), KeyCache::MAX_ENTRIES);
        assert!(cache.lock().slots.contains_key(&KeyCache::id("test", "3g")));
        assert!(
            !cache
                .lock()
                .slots
                .contains_key(&KeyCache::id("production", "3g"))
        );
    }
}
