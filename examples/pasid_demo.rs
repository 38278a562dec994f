//! A simulated IOMMU: device drivers bind and unbind processes (allocating
//! and freeing PASIDs in their own sets) while fault-handler threads look
//! PASIDs up on the hot path, as the kernel's I/O page-fault handler does;
//! and virtual machines run the guest-SVA life cycle on the same PASIDs.
//!
//! ```text
//! cargo run --release --example pasid_demo -- [--secs N] [--drivers D] [--handlers H] [--vms V]
//! cargo run --release --example pasid_demo -- --help
//! ```
//!
//! Every lookup checks that the context it found belongs to the PASID it
//! asked for; every unbind checks that the driver still owns its PASID.
//!
//! Guest SVA: each VM's process has its own set, made by a [`TokenSets`]
//! (the kernel's MM sets) with a quota reserved from a [`Capacity`] sized
//! for the VMs exactly. In each cycle of a VM's life "VFIO" allocates host
//! PASIDs in its set; the "IOMMU driver" maps each guest PASID (the same
//! numbers in every VM) to its host PASID ([`Set::attach_spid`], a BIND
//! event) and takes a reference ([`Space::get`]); "KVM" and a "device
//! driver" have notifiers on the VM's set and, on BIND, find the set by
//! its process and take their references by guest PASID
//! ([`Set::get_by_spid`]). When the guest frees a PASID it goes
//! FREE_PENDING: FREE reaches KVM, the device driver and the IOMMU driver
//! (a notifier on the global chain) in descending priority; KVM puts at
//! once, the other two once their DMA is drained, and the last put
//! releases it. Every other cycle the IOMMU driver unbinds first (UNBIND:
//! everyone puts, the guest's free releases at once), and the last cycle
//! ends the VM with its PASIDs still bound: its set's teardown sends FREE
//! and leaves them FREE_PENDING until their holders put.
//!
//! Each step checks the order of the notifications, the reference counts
//! and the FREE_PENDING state, and that no VM's lookup by guest PASID ever
//! finds another VM's PASID. The summary counts operations, throughput,
//! the VMs' sets, bindings, references, drained PASIDs and notifications,
//! live PASIDs, grace periods and errors, which must be zero (the exit
//! status says so too).

mod common;

use common::{grouped, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use ioasid::{
    Capacity, Error, Event, Notification, Policy, Registration, Set, Space, TokenSets, PASID_MAX,
    PASID_MIN,
};
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a driver attaches to a PASID: the bound process's context, shared
/// (an `Arc` is stored inline in the entry word: no allocation by the space).
struct ProcessContext {
    pasid: u32,
    pid: u32,
    driver: usize,
    /// For a VM's host PASID: the VM and the guest PASID it backs.
    guest: Option<(usize, u32)>,
}

type Context = Arc<ProcessContext>;

/// Notifier priorities, as the C `enum ioasid_notifier_prios` numbers
/// them: a chain calls the higher ones first.
const PRIO_CPU: i32 = 3;
const PRIO_DEVICE: i32 = 2;
const PRIO_IOMMU: i32 = 1;

/// The guest PASIDs (set private IDs) of every VM: the same in each.
const GUEST_PASIDS: [u32; 4] = [1, 2, 101, 102];
/// A VM set's quota: its guest PASIDs, twice over.
const VM_QUOTA: usize = 8;
/// Cycles of a VM's life; the last ends with its set's teardown.
const VM_CYCLES: usize = 6;

/// Who holds a reference on a VM's host PASID, and whose notifier ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Kvm,
    Device,
    Iommu,
}

const ROLES: [Role; 3] = [Role::Kvm, Role::Device, Role::Iommu];
const EVENTS: [Event; 4] = [Event::Alloc, Event::Bind, Event::Unbind, Event::Free];

/// One VM: its process (its set's token), the notifications its PASIDs
/// got since its thread last looked, and the references held on them.
struct Vm {
    pid: u32,
    log: Mutex<Vec<(Role, Event)>>,
    held: Mutex<BTreeSet<(Role, u32)>>,
}

/// What the VMs and their notifiers share.
struct Guests {
    mms: TokenSets<u32, Context>,
    vms: Vec<Vm>,
    stats: Arc<Stats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change is one operation: a poisoned lock holds consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Stats {
    binds: AtomicU64,
    unbinds: AtomicU64,
    rebinds: AtomicU64,
    faults: AtomicU64,
    fault_hits: AtomicU64,
    quota_refusals: AtomicU64,
    errors: AtomicU64,
    vm_sets: AtomicU64,
    guest_allocs: AtomicU64,
    guest_binds: AtomicU64,
    guest_unbinds: AtomicU64,
    references: AtomicU64,
    drained: AtomicU64,
    spid_lookups: AtomicU64,
    spid_hits: AtomicU64,
    /// Notifications of the VMs' PASIDs, by role and event.
    notes: [[AtomicU64; 4]; 3],
}

impl Stats {
    fn total(&self) -> u64 {
        [&self.binds, &self.unbinds, &self.rebinds, &self.faults]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn error(&self, what: &str) {
        eprintln!("error: {what}");
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

struct Options {
    secs: u64,
    drivers: usize,
    handlers: usize,
    vms: usize,
}

const USAGE: &str = "\
usage: pasid_demo [--secs N] [--drivers D] [--handlers H] [--vms V]

A simulated IOMMU: D device drivers bind and unbind processes (PASID
alloc/free in their own sets) while H fault handlers look PASIDs up, and
V virtual machines run the guest-SVA life cycle: a set per VM, guest
PASIDs mapped to host PASIDs, references taken by the IOMMU, KVM and a
device driver through notifiers, FREE_PENDING drained by their puts.
Prints progress, then a summary; exits 1 if any check failed.

  --secs N       run time in seconds (default 5, at least 1)
  --drivers D    driver threads, 1 to 64 (default 4)
  --handlers H   fault-handler threads, 1 to 64 (default 4)
  --vms V        VM threads, 0 to 16 (default 2)
  -h, --help     this text";

fn parse_options() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut options = Options {
        secs: 5,
        drivers: 4,
        handlers: 4,
        vms: 2,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("secs") => options.secs = parser.value()?.parse::<u64>()?.max(1),
            Long("drivers") => options.drivers = parser.value()?.parse::<usize>()?.clamp(1, 64),
            Long("handlers") => options.handlers = parser.value()?.parse::<usize>()?.clamp(1, 64),
            Long("vms") => options.vms = parser.value()?.parse::<usize>()?.min(16),
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(options)
}

fn main() {
    let options = parse_options().unwrap_or_else(|e| {
        eprintln!("pasid_demo: {e}\n\n{USAGE}");
        std::process::exit(2);
    });
    // One system-wide 20-bit PASID space; PASID 0 means "no PASID".
    let space: Space<Arc<ProcessContext>> = Space::builder()
        .range(PASID_MIN, PASID_MAX)
        .policy(Policy::Lowest)
        .build()
        .expect("valid range");
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    // The VMs' sets, one per process, with quotas from a capacity that
    // fits them exactly; the IOMMU driver's notifier on the global chain.
    let capacity = Capacity::new((options.vms * VM_QUOTA) as u32);
    let guests = Arc::new(Guests {
        mms: TokenSets::new(space.clone(), capacity.clone()),
        vms: (0..options.vms)
            .map(|vm| Vm {
                pid: 5000 + vm as u32,
                log: Mutex::new(Vec::new()),
                held: Mutex::new(BTreeSet::new()),
            })
            .collect(),
        stats: stats.clone(),
    });
    // (With no VM, nothing is registered: the drivers' paths pay nothing.)
    let iommu = (options.vms > 0).then(|| {
        let guests = guests.clone();
        space.register_notifier(PRIO_IOMMU, move |n| {
            // A VM's set carries its index + 1; the drivers' sets 0.
            if let Some(vm) = n.set_tag().checked_sub(1) {
                if vm < guests.vms.len() {
                    on_event(&guests, vm, Role::Iommu, n);
                }
            }
            ControlFlow::Continue(())
        })
    });
    println!(
        "ioasid demo: {} drivers binding processes, {} fault handlers, {} VMs, {} s, PASIDs {PASID_MIN:#x}..={PASID_MAX:#x}",
        options.drivers, options.handlers, options.vms, options.secs
    );

    let bar = ProgressBar::new(options.secs * 10);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );

    let started = Instant::now();
    std::thread::scope(|s| {
        for driver in 0..options.drivers {
            let (space, stats, stop) = (&space, &stats, &stop);
            s.spawn(move || run_driver(driver, space, stats, stop));
        }
        for handler in 0..options.handlers {
            let (space, stats, stop) = (&space, &stats, &stop);
            s.spawn(move || run_fault_handler(handler, space, stats, stop));
        }
        for vm in 0..options.vms {
            let (guests, stop) = (&guests, &stop);
            s.spawn(move || run_vm(vm, guests, stop));
        }
        let deadline = started + Duration::from_secs(options.secs);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            bar.inc(1);
            let progress = format!(
                "{:>13} ops  {:>7} PASIDs live  {} errors",
                grouped(stats.total()),
                grouped(space.live_count() as u64),
                stats.errors.load(Ordering::Relaxed)
            );
            if bar.is_hidden() {
                // Not a terminal (a log, CI): one plain line a second.
                if bar.position().is_multiple_of(10) {
                    println!("  [{:>3} s] {progress}", bar.position() / 10);
                }
            } else {
                bar.set_message(progress);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    // The IOMMU driver unloads: its notifier goes (and with it the last
    // reference to the VMs' shared state but ours).
    drop(iommu);
    let live_after = space.live_count();
    if live_after != 0 {
        stats.error(&format!(
            "{live_after} PASIDs still live after every driver unbound"
        ));
    }
    check_guest_totals(&stats, &capacity);
    let errors = stats.errors.load(Ordering::Relaxed);
    let total = stats.total();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let rate = format!(
        "{:.2} M ops/s over {elapsed:.1} s",
        total as f64 / elapsed / 1e6
    );
    let hits = format!("{} hit a live PASID", grouped(load(&stats.fault_hits)));
    let vm_note = format!(
        "{} VMs, quota {VM_QUOTA} each, capacity {}",
        options.vms,
        grouped(u64::from(capacity.total()))
    );
    let spid_note = format!(
        "{} guest PASIDs each, the same in every VM",
        GUEST_PASIDS.len()
    );
    let lookup_note = format!(
        "{} found another VM's own, none ours",
        grouped(load(&stats.spid_hits))
    );
    let notes = |event: Event| load(&stats.notes[Role::Iommu as usize][event_index(event)]);
    let order = "to KVM, device, IOMMU in that order";
    Summary::new("summary")
        .count("operations", total, &rate)
        .count("binds (alloc)", load(&stats.binds), "")
        .count("unbinds (free)", load(&stats.unbinds), "")
        .count("rebinds (set_data)", load(&stats.rebinds), "")
        .count("faults (find)", load(&stats.faults), &hits)
        .count("quota refusals", load(&stats.quota_refusals), "")
        .count("VM sets (token sets)", load(&stats.vm_sets), &vm_note)
        .count("host PASIDs (VFIO)", load(&stats.guest_allocs), "")
        .count(
            "guest PASIDs mapped (SPIDs)",
            load(&stats.guest_binds),
            &spid_note,
        )
        .count("guest PASIDs unmapped", load(&stats.guest_unbinds), "")
        .count(
            "other VMs' lookups",
            load(&stats.spid_lookups),
            &lookup_note,
        )
        .count(
            "references (get)",
            load(&stats.references),
            "IOMMU get, KVM and device get_by_spid",
        )
        .count(
            "FREE_PENDING drained",
            load(&stats.drained),
            "released by the last put",
        )
        .count("notifications ALLOC", notes(Event::Alloc), order)
        .count("notifications BIND", notes(Event::Bind), order)
        .count("notifications UNBIND", notes(Event::Unbind), order)
        .count(
            "notifications FREE",
            notes(Event::Free),
            "once per host PASID",
        )
        .count("grace periods", space.domain().grace_periods(), "")
        .count("PASIDs live", live_after as u64, "")
        .count("errors", errors, "")
        .print();
    if errors != 0 {
        std::process::exit(1);
    }
}

/// A device driver: a set with a quota (its hardware's PASID table), binding
/// and unbinding processes, checking ownership on each unbind.
fn run_driver(driver: usize, space: &Space<Arc<ProcessContext>>, stats: &Stats, stop: &AtomicBool) {
    let set = space.new_set_with_quota(4096);
    let mut rng = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1D ^ (driver as u64 + 1) << 20);
    let mut bound: Vec<(u32, u32)> = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let pid = 1000 + rng.u64(..1 << 20) as u32;
        let context = Arc::new(ProcessContext {
            pasid: 0,
            pid,
            driver,
            guest: None,
        });
        match set.alloc(PASID_MIN, PASID_MAX, context) {
            Ok(pasid) => {
                // Record the PASID in the context, as a driver does once the
                // hardware table entry is written.
                if set
                    .set_data(
                        pasid,
                        Arc::new(ProcessContext {
                            pasid,
                            pid,
                            driver,
                            guest: None,
                        }),
                    )
                    .is_err()
                {
                    stats.error("set_data on a freshly bound PASID failed");
                }
                stats.binds.fetch_add(1, Ordering::Relaxed);
                stats.rebinds.fetch_add(1, Ordering::Relaxed);
                bound.push((pasid, pid));
            }
            Err(Error::QuotaExceeded) => {
                stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error(&format!("driver {driver}: bind failed: {e}")),
        }
        if bound.len() > 2000 || (!bound.is_empty() && rng.u64(..2) == 0) {
            let (pasid, pid) = bound.swap_remove(rng.usize(..bound.len()));
            match set.with(pasid, |c| (c.pasid, c.pid, c.driver)) {
                Ok(found) if found == (pasid, pid, driver) => {}
                other => stats.error(&format!("driver {driver}: PASID {pasid} holds {other:?}")),
            }
            if let Err(e) = set.free(pasid) {
                stats.error(&format!("driver {driver}: unbind of {pasid} failed: {e}"));
            }
            stats.unbinds.fetch_add(1, Ordering::Relaxed);
        }
        if round.is_multiple_of(50_000) {
            // A driver tearing down a batch waits for the fault handlers, as
            // the kernel does with synchronize_rcu() before freeing a context.
            space.synchronize();
        }
    }
    for (pasid, _) in bound {
        if set.free(pasid).is_err() {
            stats.error("final unbind failed");
        }
        stats.unbinds.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fault handler: looks PASIDs up lock-free and checks what it finds.
fn run_fault_handler(
    handler: usize,
    space: &Space<Arc<ProcessContext>>,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15 ^ (handler as u64 + 7) << 32);
    // Faults cluster on low PASIDs (the lowest-free policy packs them there).
    let hot = 4096 * 8;
    while !stop.load(Ordering::Relaxed) {
        let guard = space.pin();
        let mut hits = 0;
        for _ in 0..256 {
            let pasid = PASID_MIN + rng.u64(..hot) as u32;
            if let Some(context) = space.find(pasid, &guard) {
                // A context is either the one being bound (pasid still 0)
                // or the one recorded for exactly this PASID.
                if context.pasid != pasid && context.pasid != 0 {
                    stats.error(&format!(
                        "fault on {pasid} found the context of {}",
                        context.pasid
                    ));
                }
                hits += 1;
            }
        }
        drop(guard);
        stats.faults.fetch_add(256, Ordering::Relaxed);
        stats.fault_hits.fetch_add(hits, Ordering::Relaxed);
    }
}

fn event_index(event: Event) -> usize {
    event.as_raw() as usize - 1
}

/// One notifier call about a PASID of VM `vm`: logged for the VM's thread,
/// counted, and acted on as `role` does.
fn on_event(guests: &Guests, vm: usize, role: Role, n: &Notification<'_, Context>) {
    let (stats, space) = (&guests.stats, guests.mms.space());
    let id = n.id();
    lock(&guests.vms[vm].log).push((role, n.event()));
    stats.notes[role as usize][event_index(n.event())].fetch_add(1, Ordering::Relaxed);
    // The context says which VM and guest PASID the host PASID serves.
    let guest = n.data().and_then(|c| c.guest);
    if guest.map(|g| g.0) != Some(vm)
        || n.spid()
            .is_some_and(|spid| Some(spid) != guest.map(|g| g.1))
    {
        stats.error(&format!(
            "{role:?}: {:?} of {id} carries {guest:?}",
            n.event()
        ));
    }
    let held = &guests.vms[vm].held;
    match (role, n.event()) {
        (Role::Kvm | Role::Device, Event::Bind) => {
            // The VM's set by its process, then the host PASID by the
            // guest's, with a reference kept.
            let spid = n.spid().unwrap_or(u32::MAX);
            let set = guests.mms.find(&guests.vms[vm].pid);
            match set.map(|set| set.get_by_spid(spid)) {
                Some(Ok(found)) if found == id => {
                    lock(held).insert((role, id));
                    stats.references.fetch_add(1, Ordering::Relaxed);
                }
                other => stats.error(&format!("{role:?}: guest PASID {spid} gave {other:?}")),
            }
        }
        (Role::Kvm, Event::Free) | (Role::Kvm | Role::Device, Event::Unbind) => {
            // KVM puts at once; the device driver too when unbound.
            let had = lock(held).remove(&(role, id));
            if had && space.put(id) != Ok(false) {
                stats.error(&format!("{role:?}: its put released {id} (others hold it)"));
            }
        }
        (Role::Iommu, Event::Free) => {
            // FREE_PENDING while the device driver and the IOMMU hold it.
            let pending = lock(held).contains(&(Role::Iommu, id));
            if space.is_free_pending(id) != pending {
                stats.error(&format!("FREE of {id}: FREE_PENDING is not {pending}"));
            }
        }
        _ => {}
    }
}

/// Takes the VM's log and checks it holds `count` rounds of `event`, each
/// seen by KVM, the device driver and the IOMMU driver in that order.
fn expect_log(guests: &Guests, vm: usize, event: Event, count: usize) {
    let log = std::mem::take(&mut *lock(&guests.vms[vm].log));
    let want: Vec<(Role, Event)> = (0..count)
        .flat_map(|_| ROLES.iter().map(move |&role| (role, event)))
        .collect();
    if log != want {
        guests.stats.error(&format!(
            "VM {vm}: notifications {log:?}, not {count} x {event:?} in priority order"
        ));
    }
}

/// Drops the reference `role` holds on `id`; `Ok(released)` expected.
fn put_held(guests: &Guests, vm: usize, role: Role, id: u32, released: bool) {
    let had = lock(&guests.vms[vm].held).remove(&(role, id));
    let put = guests.mms.space().put(id);
    if !had || put != Ok(released) {
        guests.stats.error(&format!(
            "VM {vm}: {role:?} put of {id} gave {put:?} (held: {had})"
        ));
    } else if released {
        guests.stats.drained.fetch_add(1, Ordering::Relaxed);
    }
}

/// A virtual machine: a set per life, guest PASIDs bound and freed in
/// cycles, the last one ending in the set's teardown.
fn run_vm(vm: usize, guests: &Arc<Guests>, stop: &AtomicBool) {
    let (stats, space, pid) = (&guests.stats, guests.mms.space(), guests.vms[vm].pid);
    while !stop.load(Ordering::Relaxed) {
        // The VM starts: its process's set, quota from the capacity.
        let set = match guests.mms.create(pid, VM_QUOTA) {
            Ok(set) => set,
            Err(e) => {
                stats.error(&format!("VM {vm}: its set: {e}"));
                return;
            }
        };
        stats.vm_sets.fetch_add(1, Ordering::Relaxed);
        set.set_tag(vm + 1);
        if guests.mms.create(pid, 1).err() != Some(Error::AlreadyExists) {
            stats.error(&format!("VM {vm}: a second set for its process"));
        }
        let register = |role: Role, priority: i32| -> Registration<Context> {
            let guests = guests.clone();
            set.register_notifier(priority, move |n| {
                on_event(&guests, vm, role, n);
                ControlFlow::Continue(())
            })
        };
        // Registered lowest first: the chain orders them.
        let device = register(Role::Device, PRIO_DEVICE);
        let kvm = register(Role::Kvm, PRIO_CPU);
        let mut hosts = Vec::new();
        for cycle in 0..VM_CYCLES {
            hosts = bind_guest_pasids(vm, guests, &set);
            if cycle == VM_CYCLES - 1 || stop.load(Ordering::Relaxed) {
                break;
            }
            if cycle % 2 == 1 {
                unbind_then_free(vm, guests, &set, &hosts);
            } else {
                free_bound(vm, guests, &set, &hosts);
                for &host in &hosts {
                    put_held(guests, vm, Role::Device, host, false);
                    put_held(guests, vm, Role::Iommu, host, true);
                }
            }
        }
        // The VM ends with its PASIDs bound. Its own thread drops the last
        // reference to its set (other VMs' lookups hold one briefly).
        let mut set = set;
        let set = loop {
            match Arc::try_unwrap(set) {
                Ok(set) => break set,
                Err(shared) => {
                    set = shared;
                    std::thread::yield_now();
                }
            }
        };
        drop(set); // teardown: FREE to every notifier, FREE_PENDING
        expect_log(guests, vm, Event::Free, hosts.len());
        if guests.mms.find(&pid).is_some() {
            stats.error(&format!("VM {vm}: its set outlived its teardown"));
        }
        drop((kvm, device));
        for &host in &hosts {
            if !space.is_free_pending(host) || space.ref_count(host) != Some(2) {
                stats.error(&format!(
                    "VM {vm}: {host} after teardown: not FREE_PENDING with 2 references"
                ));
            }
            put_held(guests, vm, Role::Device, host, false);
            put_held(guests, vm, Role::Iommu, host, true);
        }
    }
}

/// VFIO allocates a host PASID per guest PASID; the IOMMU driver maps it
/// (BIND: KVM and the device driver take references) and takes its own.
fn bind_guest_pasids(vm: usize, guests: &Guests, set: &Set<Context>) -> Vec<u32> {
    let (stats, space, pid) = (&guests.stats, guests.mms.space(), guests.vms[vm].pid);
    let mut hosts = Vec::new();
    for &spid in &GUEST_PASIDS {
        let context = |pasid| {
            Arc::new(ProcessContext {
                pasid,
                pid,
                driver: usize::MAX,
                guest: Some((vm, spid)),
            })
        };
        let host = match set.alloc(PASID_MIN, PASID_MAX, context(0)) {
            Ok(host) => host,
            Err(e) => {
                stats.error(&format!("VM {vm}: host PASID for guest PASID {spid}: {e}"));
                continue;
            }
        };
        stats.guest_allocs.fetch_add(1, Ordering::Relaxed);
        expect_log(guests, vm, Event::Alloc, 1);
        if set.set_data(host, context(host)).is_err() {
            stats.error(&format!("VM {vm}: set_data on {host}"));
        }
        if let Err(e) = set.attach_spid(host, spid) {
            stats.error(&format!("VM {vm}: attach_spid({host}, {spid}): {e}"));
        }
        stats.guest_binds.fetch_add(1, Ordering::Relaxed);
        expect_log(guests, vm, Event::Bind, 1);
        match space.get(host) {
            Ok(()) => {
                lock(&guests.vms[vm].held).insert((Role::Iommu, host));
                stats.references.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error(&format!("VM {vm}: IOMMU get of {host}: {e}")),
        }
        // The allocation's, the IOMMU's, KVM's and the device driver's.
        if space.ref_count(host) != Some(4) || set.find_by_spid(spid) != Ok(host) {
            stats.error(&format!(
                "VM {vm}: {host} bound: {:?} references",
                space.ref_count(host)
            ));
        }
        hosts.push(host);
        // The same guest PASID in the other VMs never names one of ours.
        for (other, theirs) in guests.vms.iter().enumerate() {
            if other == vm {
                continue;
            }
            if let Some(their_set) = guests.mms.find(&theirs.pid) {
                stats.spid_lookups.fetch_add(1, Ordering::Relaxed);
                if let Ok(found) = their_set.find_by_spid(spid) {
                    stats.spid_hits.fetch_add(1, Ordering::Relaxed);
                    if hosts.contains(&found) {
                        stats.error(&format!(
                            "VM {other}'s guest PASID {spid} found VM {vm}'s {found}"
                        ));
                    }
                }
            }
        }
    }
    hosts
}

/// The guest frees its bound PASIDs: FREE_PENDING, found while the device
/// driver and the IOMMU drain, never got again, unmapped at once.
fn free_bound(vm: usize, guests: &Guests, set: &Set<Context>, hosts: &[u32]) {
    let (stats, space) = (&guests.stats, guests.mms.space());
    for &host in hosts {
        let spid = space.spid(host);
        if let Err(e) = set.free(host) {
            stats.error(&format!("VM {vm}: free of {host}: {e}"));
        }
        expect_log(guests, vm, Event::Free, 1);
        let found = space.with(host, |c| c.pasid);
        if !space.is_free_pending(host)
            || space.ref_count(host) != Some(2)
            || found != Some(host)
            || space.get(host) != Err(Error::NotFound)
            || spid.is_none_or(|spid| set.find_by_spid(spid) != Err(Error::NotFound))
        {
            stats.error(&format!(
                "VM {vm}: {host} freed while held: not FREE_PENDING as it should be"
            ));
        }
    }
}

/// The IOMMU driver unbinds first (UNBIND: KVM and the device driver put)
/// and puts; the guest's free then releases at once.
fn unbind_then_free(vm: usize, guests: &Guests, set: &Set<Context>, hosts: &[u32]) {
    let stats = &guests.stats;
    for &host in hosts {
        match set.detach_spid(host) {
            Ok(Some(_)) => {
                stats.guest_unbinds.fetch_add(1, Ordering::Relaxed);
            }
            other => stats.error(&format!("VM {vm}: detach_spid({host}) gave {other:?}")),
        }
        expect_log(guests, vm, Event::Unbind, 1);
        put_held(guests, vm, Role::Iommu, host, false);
        match set.free_released(host) {
            Ok(true) => {}
            other => stats.error(&format!("VM {vm}: free of unbound {host} gave {other:?}")),
        }
        expect_log(guests, vm, Event::Free, 1);
    }
}

/// After the run: every guest PASID had its notifications exactly once
/// per notifier, every reference was put, every quota given back.
fn check_guest_totals(stats: &Stats, capacity: &Capacity) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let allocs = load(&stats.guest_allocs);
    let want = [
        allocs,
        load(&stats.guest_binds),
        load(&stats.guest_unbinds),
        allocs,
    ];
    for role in ROLES {
        for (event, want) in EVENTS.iter().zip(want) {
            let seen = load(&stats.notes[role as usize][event_index(*event)]);
            if seen != want {
                stats.error(&format!("{role:?} saw {seen} {event:?}, not {want}"));
            }
        }
    }
    if load(&stats.references) != 3 * load(&stats.guest_binds) {
        stats.error("not three references per mapped guest PASID");
    }
    if capacity.available() != capacity.total() {
        stats.error(&format!(
            "{} of the capacity still reserved",
            capacity.reserved()
        ));
    }
}
