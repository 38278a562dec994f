//! Sets found by token (SPEC 6.4's MM sets): at most one live set per
//! token, looked up by that token, and notifiers registered by token.
//!
//! In Rust a set reference is an `Arc<Set>`: a clone is `ioasid_set_get`,
//! a drop `ioasid_set_put`, and the last drop tears the set down (frees
//! its IDs, gives its quota back to its [`Capacity`]). A [`TokenSets`]
//! holds only weak references, so it never keeps a set alive: a token's
//! set is found while someone holds it, and the token is free again once
//! the last holder dropped it.
//!
//! A notifier registered for a token ([`TokenSets::register_notifier`],
//! the C layer's `ioasid_register_notifier_mm`) is on the chain of the
//! token's live set, or *parked* while the token has none: a create for
//! the token puts it on the new set's chain before the set is handed out
//! (so it sees every event of that set), and the set's teardown, after
//! its FREE events, takes it off again (parked: it raises no space's
//! notifier count while parked).
//!
//! INVARIANTS (all under the one state lock):
//! - `sets` holds, per token, the one set created for it that may still be
//!   alive; a create for a token whose set can no longer be upgraded
//!   replaces the entry, and entries of dead sets are pruned on create.
//! - A block of `blocks` is attached (`attached` names the serials of the
//!   sets whose chains hold it) only to sets of its token whose teardown
//!   has not passed their drop hook: the token's set in `sets`, and older
//!   ones still in teardown (a create does not wait for them). A create
//!   attaches every block of its token to the new set, a register attaches
//!   its block to the token's live set, and a set's drop hook detaches
//!   exactly the registrations that name its serial. Registrations
//!   taken off are dropped after the lock is released (a drop waits for
//!   the block's calls in flight, which may themselves use the registry).

use crate::capacity::Capacity;
use crate::entry::Payload;
use crate::error::Error;
use crate::notify::{Notification, Registration};
use crate::set::Set;
use crate::snapshot::Snapshot;
use crate::space::Space;
use crate::sync::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};

type Callback<T> = Arc<dyn Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync>;

/// A notifier registered for a token.
struct TokenBlock<T: Payload> {
    id: u64,
    priority: i32,
    callback: Callback<T>,
    /// The serials of the sets whose chains hold it, with those
    /// registrations: the token's live set, and sets of the token still in
    /// teardown (for their last FREE events). Empty: parked.
    attached: Vec<(u64, Registration<T>)>,
}

/// What the lock of a [`TokenSets`] guards (module invariants).
struct State<K, T: Payload, const F: usize> {
    /// Token -> (its set's serial, the set).
    sets: HashMap<K, (u64, Weak<Set<T, F>>)>,
    blocks: HashMap<K, Vec<TokenBlock<T>>>,
    /// The next set serial and block id.
    next: u64,
}

type Shared<K, T, const F: usize> = Arc<Mutex<State<K, T, F>>>;

/// A reference to a set, as [`TokenSets::create`] hands out.
type SetRef<T, const F: usize> = Arc<Set<T, F>>;

fn lock<S>(state: &Mutex<S>) -> crate::sync::MutexGuard<'_, S> {
    // Every change is completed before the lock is released (registrations
    // are only moved under it): a poisoned lock holds a consistent state.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// One set per token, in one space, with quotas from one [`Capacity`].
///
/// ```
/// use ioasid::{Capacity, Error, Space, TokenSets};
/// let space = Space::<()>::new(1, 0xFFFFF)?;
/// let mms: TokenSets<u32, ()> = TokenSets::new(space, Capacity::new(0xFFFFF));
/// let vm = mms.create(1234, 16)?; // the set of process 1234
/// assert_eq!(mms.create(1234, 16).err(), Some(Error::AlreadyExists));
/// let found = mms.find(&1234).expect("held by vm");
/// assert!(std::sync::Arc::ptr_eq(&vm, &found));
/// drop((vm, found)); // the last reference: torn down
/// assert!(mms.find(&1234).is_none());
/// assert!(mms.create(1234, 16).is_ok(), "the token is free again");
/// # Ok::<(), Error>(())
/// ```
pub struct TokenSets<K, T: Payload, const F: usize = 64> {
    space: Space<T, F>,
    capacity: Capacity,
    state: Shared<K, T, F>,
}

impl<K: Hash + Eq + Clone + Send + 'static, T: Payload, const F: usize> TokenSets<K, T, F> {
    /// An empty registry of sets of `space`, reserving from `capacity`.
    pub fn new(space: Space<T, F>, capacity: Capacity) -> Self {
        TokenSets {
            space,
            capacity,
            state: Arc::new(Mutex::new(State {
                sets: HashMap::new(),
                blocks: HashMap::new(),
                next: 1,
            })),
        }
    }

    /// A new set for `token` with `quota` reserved from the capacity, held
    /// by the returned `Arc` (`ioasid_alloc_set` of type MM). The
    /// notifiers registered for `token` are on its chain before it is
    /// returned. [`Error::AlreadyExists`] while the token's set is alive;
    /// [`Error::NoSpace`] when the capacity has less than `quota` left.
    pub fn create(&self, token: K, quota: usize) -> Result<Arc<Set<T, F>>, Error> {
        let mut state = lock(&self.state);
        if state
            .sets
            .get(&token)
            .is_some_and(|(_, s)| s.strong_count() > 0)
        {
            return Err(Error::AlreadyExists);
        }
        let set = self.space.try_new_set_from(&self.capacity, quota)?;
        Ok(self.install(&mut state, token, set))
    }

    /// Makes `set` the set of `token` (a set of this registry's space made
    /// elsewhere, typically one [`Space::restore`](crate::fanout::Space::restore)
    /// handed back after a migration), with its quota reserved from the
    /// registry's capacity if it reserves from none yet; the token's
    /// notifiers join its chain. The returned reference holds it, as
    /// [`TokenSets::create`]'s does. [`Error::AlreadyExists`] while the
    /// token's set is alive; [`Error::InvalidArgument`] for a set of
    /// another space, without quota, or reserving from another capacity;
    /// [`Error::NoSpace`] when the capacity has less than its quota left.
    /// On error the set is dropped (torn down).
    ///
    /// ```
    /// use ioasid::{Capacity, Space, TokenSets};
    /// let space = Space::<u32>::new(1, 99)?;
    /// let mms: TokenSets<u32, u32> = TokenSets::new(space.clone(), Capacity::new(99));
    /// let vm = mms.create(1234, 8)?;
    /// let id = vm.alloc(1, 99, 7)?;
    /// let token_of = [(vm.number(), 1234)];
    ///
    /// // The migration target: the space restored, each set under its token
    /// // (held by the returned references, as `create`'s).
    /// let (copy, sets) = Space::<u32>::restore(space.snapshot())?;
    /// let target: TokenSets<u32, u32> = TokenSets::new(copy, Capacity::new(99));
    /// let held = sets
    ///     .into_iter()
    ///     .map(|set| {
    ///         let token = token_of.iter().find(|(n, _)| *n == set.number()).unwrap().1;
    ///         target.adopt(token, set)
    ///     })
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(held.len(), 1);
    /// let found = target.find(&1234).expect("adopted");
    /// assert_eq!((found.copied(id), target.capacity().available()), (Ok(7), 91));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn adopt(&self, token: K, mut set: Set<T, F>) -> Result<Arc<Set<T, F>>, Error> {
        if !std::sync::Arc::ptr_eq(&set.space().inner, &self.space.inner) {
            return Err(Error::InvalidArgument);
        }
        let mut state = lock(&self.state);
        let live = state
            .sets
            .get(&token)
            .is_some_and(|(_, s)| s.strong_count() > 0);
        let refused = match set.capacity() {
            _ if live => Some(Error::AlreadyExists),
            None => set.reserve_from(&self.capacity).err(),
            Some(c) if c.same_pool(&self.capacity) => None,
            Some(_) => Some(Error::InvalidArgument),
        };
        if let Some(e) = refused {
            // The set's teardown (FREE events, whose callbacks may use this
            // registry) runs with the lock released.
            drop(state);
            drop(set);
            return Err(e);
        }
        Ok(self.install(&mut state, token, set))
    }

    /// Registers `set` as the set of `token` (the caller checked that the
    /// token has no live set, under the lock it holds).
    fn install(&self, state: &mut State<K, T, F>, token: K, mut set: Set<T, F>) -> Arc<Set<T, F>> {
        let serial = state.next;
        state.next += 1;
        let weak = Arc::downgrade(&self.state);
        let owner = token.clone();
        set.set_drop_hook(Box::new(move || {
            if let Some(state) = weak.upgrade() {
                park(&state, &owner, serial);
            }
        }));
        let set = Arc::new(set);
        // Every block of the token joins its chain, before any event of
        // it. Those still on the chain of a dead set of this token (its
        // teardown under way) stay there too, for its last FREE events,
        // until its drop hook takes them off.
        attach(state, &token, serial, &set);
        state.sets.retain(|_, (_, s)| s.strong_count() > 0);
        state.sets.insert(token, (serial, Arc::downgrade(&set)));
        set
    }

    /// The live set of `token`, with a reference (`ioasid_find_mm_set`);
    /// `None` if it has none. A set whose last reference is being dropped
    /// is never revived.
    ///
    /// ```
    /// let mms = ioasid::TokenSets::<&str, ()>::new(
    ///     ioasid::Space::new(0, 9)?,
    ///     ioasid::Capacity::new(10),
    /// );
    /// assert!(mms.find(&"vm").is_none());
    /// let _vm = mms.create("vm", 1)?;
    /// assert_eq!(mms.find(&"vm").and_then(|s| s.quota()), Some(1));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn find(&self, token: &K) -> Option<Arc<Set<T, F>>> {
        lock(&self.state)
            .sets
            .get(token)
            .and_then(|(_, s)| s.upgrade())
    }

    /// Registers `callback` with `priority` for the set of `token`
    /// (`ioasid_register_notifier_mm`): on the chain of the token's live
    /// set at once if it has one, else parked until a set is created for
    /// the token (earlier events are not replayed); parked again when that
    /// set is torn down, after its FREE events. Dropping the returned
    /// registration unregisters it (waiting for its calls in flight on
    /// other threads). Callbacks run as those of
    /// [`Set::register_notifier`](crate::fanout::Set::register_notifier).
    ///
    /// ```
    /// use ioasid::{Capacity, Event, Space, TokenSets};
    /// use std::ops::ControlFlow;
    /// use std::sync::{Arc, Mutex};
    /// let mms: TokenSets<u32, ()> = TokenSets::new(Space::new(1, 99)?, Capacity::new(99));
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// // Parked: process 7 has no set yet.
    /// let _kvm = mms.register_notifier(7, 0, move |n| {
    ///     log.lock().unwrap().push((n.event(), n.id()));
    ///     ControlFlow::Continue(())
    /// });
    /// let vm = mms.create(7, 4)?;
    /// let id = vm.alloc(1, 99, ())?;
    /// drop(vm); // teardown: FREE, then parked again
    /// let again = mms.create(7, 4)?;
    /// again.alloc(1, 99, ())?;
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [(Event::Alloc, id), (Event::Free, id), (Event::Alloc, id)]
    /// );
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn register_notifier(
        &self,
        token: K,
        priority: i32,
        callback: impl Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync + 'static,
    ) -> TokenRegistration<K, T, F> {
        let callback: Callback<T> = Arc::new(callback);
        let mut state = lock(&self.state);
        let id = state.next;
        state.next += 1;
        let live = state
            .sets
            .get(&token)
            .and_then(|&(serial, ref s)| Some((serial, s.upgrade()?)));
        state
            .blocks
            .entry(token.clone())
            .or_default()
            .push(TokenBlock {
                id,
                priority,
                callback,
                attached: Vec::new(),
            });
        if let Some((serial, set)) = &live {
            attach(&mut state, &token, *serial, set);
        }
        drop(state);
        // Our reference to the set goes after the lock: if it was the last
        // one, the teardown's hook takes the lock.
        drop(live);
        TokenRegistration {
            state: Arc::downgrade(&self.state),
            token: Some(token),
            id,
        }
    }

    /// The capacity the sets reserve from.
    ///
    /// ```
    /// let mms = ioasid::TokenSets::<u8, ()>::new(ioasid::Space::new(0, 9)?, ioasid::Capacity::new(4));
    /// let _a = mms.create(1, 3)?;
    /// assert_eq!(mms.capacity().available(), 1);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// The space of the sets.
    pub fn space(&self) -> &Space<T, F> {
        &self.space
    }

    /// The state of the space ([`Space::snapshot`](crate::fanout::Space::snapshot))
    /// with the token of every live token set, taken under the registry's
    /// lock: no token set is created or adopted meanwhile, and the ones
    /// found are held until the space's state is taken, so every token
    /// names a saved set. Notifiers registered by token are code, not
    /// data: they are not saved (register them on the restored registry).
    ///
    /// ```
    /// use ioasid::{Capacity, Space, TokenSets};
    /// let mms: TokenSets<u32, u32> = TokenSets::new(Space::new(1, 99)?, Capacity::new(99));
    /// let vm = mms.create(1234, 8)?;
    /// let id = vm.alloc(1, 99, 7)?;
    /// let snapshot = mms.snapshot();
    /// assert_eq!(snapshot.tokens, [(vm.number(), 1234)]);
    ///
    /// // The migration target: the registry back, each set under its token.
    /// let (target, sets) = TokenSets::<u32, u32>::restore(snapshot, Capacity::new(99))?;
    /// let found = target.find(&1234).expect("restored under its token");
    /// assert!(std::sync::Arc::ptr_eq(&found, &sets[0]));
    /// assert_eq!((found.copied(id), target.capacity().available()), (Ok(7), 91));
    /// assert_eq!(found.alloc(1, 99, 8)?, vm.alloc(1, 99, 8)?);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn snapshot(&self) -> TokenSnapshot<K, T>
    where
        T: Clone,
    {
        let state = lock(&self.state);
        let held: Vec<(K, Arc<Set<T, F>>)> = state
            .sets
            .iter()
            .filter_map(|(token, (_, set))| Some((token.clone(), set.upgrade()?)))
            .collect();
        let space = self.space.snapshot();
        drop(state);
        let mut tokens: Vec<(u16, K)> = held
            .iter()
            .map(|(token, set)| (set.number(), token.clone()))
            .collect();
        tokens.sort_by_key(|&(number, _)| number);
        // Our references go after the lock: if one was the last, the
        // teardown's hook takes the lock.
        drop(held);
        TokenSnapshot { space, tokens }
    }

    /// A registry rebuilt from `snapshot`, reserving from `capacity`: the
    /// space as [`Space::restore`](crate::fanout::Space::restore) rebuilds
    /// it (global domain), each token set adopted under its token (its
    /// quota reserved from `capacity`), and every set in ascending number,
    /// held by the returned references (a set without a token is held
    /// only there). Checked before anything is created:
    /// [`Error::InvalidArgument`] for a space snapshot that
    /// [`Space::restore`](crate::fanout::Space::restore) refuses, a token
    /// naming no saved set or a set without quota, and a set number or
    /// token listed twice; [`Error::NoSpace`] when `capacity` has less
    /// left than the token sets' quotas (capacity that another user takes
    /// meanwhile fails the adoption with the same error; the sets restored
    /// so far are dropped then).
    pub fn restore(
        snapshot: TokenSnapshot<K, T>,
        capacity: Capacity,
    ) -> Result<(Self, Vec<SetRef<T, F>>), Error> {
        let TokenSnapshot { space, tokens } = snapshot;
        let mut numbers = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        let mut reserved = 0usize;
        for (number, token) in &tokens {
            let quota = space
                .sets
                .iter()
                .find(|set| set.number == *number)
                .and_then(|set| set.quota)
                .ok_or(Error::InvalidArgument)?;
            if !numbers.insert(*number) || !seen.insert(token) {
                return Err(Error::InvalidArgument);
            }
            reserved = reserved.checked_add(quota).ok_or(Error::NoSpace)?;
        }
        if reserved > usize::try_from(capacity.available()).unwrap_or(usize::MAX) {
            return Err(Error::NoSpace);
        }
        let (space, sets) = Space::<T, F>::restore(space)?;
        let registry = TokenSets::new(space, capacity);
        let mut tokens: HashMap<u16, K> = tokens.into_iter().collect();
        let held = sets
            .into_iter()
            .map(|set| match tokens.remove(&set.number()) {
                Some(token) => registry.adopt(token, set),
                None => Ok(Arc::new(set)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((registry, held))
    }
}

/// The state of a [`TokenSets`]: its space's [`Snapshot`] and the token of
/// each token set ([`TokenSets::snapshot`], [`TokenSets::restore`]). With
/// the `serde` feature it is `Serialize`/`Deserialize` (for a `K` that
/// is), so a registry migrates through any serde format.
///
/// ```
/// let snapshot = ioasid::TokenSnapshot::new(ioasid::Snapshot::<u32>::new(1, 9, ioasid::Policy::Lowest), vec![(1, "vm")]);
/// assert_eq!(snapshot.tokens[0], (1, "vm"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TokenSnapshot<K, T> {
    /// The space, its sets and IDs.
    pub space: Snapshot<T>,
    /// `(set number, token)` of every token set, in ascending number; the
    /// space's other sets have no token.
    pub tokens: Vec<(u16, K)>,
}

impl<K, T> TokenSnapshot<K, T> {
    /// A snapshot from its parts (for one made or edited by hand).
    pub fn new(space: Snapshot<T>, tokens: Vec<(u16, K)>) -> Self {
        TokenSnapshot { space, tokens }
    }
}

impl<K, T: Payload, const F: usize> fmt::Debug for TokenSets<K, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSets")
            .field("space", &self.space)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Puts the blocks of `token` on the chain of `set` (serial `serial`,
/// alive: the caller holds it), those not on it already.
fn attach<K: Hash + Eq, T: Payload, const F: usize>(
    state: &mut State<K, T, F>,
    token: &K,
    serial: u64,
    set: &Set<T, F>,
) {
    for block in state.blocks.get_mut(token).into_iter().flatten() {
        if block.attached.iter().all(|(s, _)| *s != serial) {
            let callback = block.callback.clone();
            let registration =
                set.register_notifier(block.priority, move |n: &Notification<'_, T>| callback(n));
            block.attached.push((serial, registration));
        }
    }
}

/// Takes the blocks of `token` off the chain of its set with `serial`
/// (that set's teardown, after its FREE events): parked again, unless a
/// newer set of the token holds them too.
fn park<K: Hash + Eq, T: Payload, const F: usize>(
    state: &Mutex<State<K, T, F>>,
    token: &K,
    serial: u64,
) {
    let taken: Vec<Registration<T>> = {
        let mut state = lock(state);
        let mut taken = Vec::new();
        for block in state.blocks.get_mut(token).into_iter().flatten() {
            if let Some(at) = block.attached.iter().position(|(s, _)| *s == serial) {
                taken.push(block.attached.swap_remove(at).1);
            }
        }
        taken
    };
    // Dropped with the lock released: each waits for calls in flight.
    drop(taken);
}

/// A notifier registered for a token ([`TokenSets::register_notifier`]);
/// dropping it unregisters it.
#[must_use = "dropping a registration unregisters it"]
pub struct TokenRegistration<K: Hash + Eq, T: Payload, const F: usize = 64> {
    state: Weak<Mutex<State<K, T, F>>>,
    token: Option<K>,
    id: u64,
}

impl<K: Hash + Eq, T: Payload, const F: usize> TokenRegistration<K, T, F> {
    /// True while the block is on a set's chain (not parked): the token's
    /// live set, or one still in its teardown.
    ///
    /// ```
    /// let mms = ioasid::TokenSets::<u8, ()>::new(ioasid::Space::new(0, 9)?, ioasid::Capacity::new(9));
    /// let r = mms.register_notifier(1, 0, |_| std::ops::ControlFlow::Continue(()));
    /// assert!(!r.is_attached());
    /// let set = mms.create(1, 1)?;
    /// assert!(r.is_attached());
    /// drop(set);
    /// assert!(!r.is_attached());
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn is_attached(&self) -> bool {
        let (Some(state), Some(token)) = (self.state.upgrade(), &self.token) else {
            return false;
        };
        let state = lock(&state);
        let blocks = state.blocks.get(token).into_iter().flatten();
        let mut mine = blocks.filter(|b| b.id == self.id);
        mine.next().is_some_and(|b| !b.attached.is_empty())
    }

    /// Unregisters now (as dropping does): returns once no call of the
    /// block is in flight on another thread.
    pub fn unregister(mut self) {
        self.take_off();
    }

    fn take_off(&mut self) {
        let (Some(state), Some(token)) = (self.state.upgrade(), self.token.take()) else {
            return;
        };
        let taken = {
            let mut state = lock(&state);
            let Some(blocks) = state.blocks.get_mut(&token) else {
                return;
            };
            let at = blocks.iter().position(|b| b.id == self.id);
            let taken = at.map(|at| blocks.swap_remove(at));
            if blocks.is_empty() {
                state.blocks.remove(&token);
            }
            taken
        };
        // Dropped with the lock released: it waits for calls in flight.
        drop(taken);
    }
}

impl<K: Hash + Eq, T: Payload, const F: usize> Drop for TokenRegistration<K, T, F> {
    fn drop(&mut self) {
        self.take_off();
    }
}

impl<K: Hash + Eq, T: Payload, const F: usize> fmt::Debug for TokenRegistration<K, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRegistration")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
