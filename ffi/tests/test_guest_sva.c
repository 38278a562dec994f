/* The guest-SVA life cycle (SPEC 6.2, 6.4-6.6), replayed by several VMs at
 * once, one thread each, in lockstep phases over several rounds:
 *
 *   - each VM's process (an MM token) gets its own set per round
 *     (ioasid_alloc_set, a quota reserved from a capacity installed to fit
 *     the VMs exactly), and gives it back with ioasid_set_put;
 *   - "VFIO" allocates the host PASIDs in the VM's set (each VM in its own
 *     window of host IDs, so that numbers can be seen coming back);
 *   - the "IOMMU driver" binds each guest PASID (the same SPIDs, 0, 101,
 *     102 and 0xFFFFFFFE, in every VM) to its host PASID with
 *     ioasid_attach_spid and takes a reference with ioasid_get;
 *   - "KVM" and a "device driver" registered one block per VM with
 *     ioasid_register_notifier_mm before the VM's set existed (parked, then
 *     attached to each round's set, parked again at its teardown); on BIND
 *     each takes a reference with ioasid_find_by_spid(set, spid, true);
 *   - the IOMMU driver also has a block on the global chain, with an audit
 *     block of the lowest priority after it;
 *   - the guest frees (ioasid_free): the ID goes FREE_PENDING, FREE goes to
 *     every block in order, KVM puts at once, the device driver and the
 *     IOMMU driver put later (DMA drained); the last put releases the ID,
 *     and the next allocation gets the same number back;
 *   - other cycles unbind first (ioasid_detach_spid: UNBIND, everyone puts)
 *     so the guest's free releases at once; the last cycle of a round ends
 *     the VM with its PASIDs still bound: the set's teardown sends FREE and
 *     leaves them FREE_PENDING until their holders put.
 *
 * Chains call blocks in descending priority (the kernel's order): an
 * event reaches the set chain (KVM, IOASID_PRIO_CPU, then the device
 * driver, IOASID_PRIO_DEVICE, registered in the other order) and then the
 * global chain (the IOMMU driver, IOASID_PRIO_IOMMU, then the audit block,
 * IOASID_PRIO_LAST, also registered in the other order). Every ID's events
 * are logged and compared with that order; each block counts its events;
 * references are checked by the puts it takes to release each ID; live
 * counts, quotas and the capacity at each phase; and no VM's lookup by
 * SPID ever finds another VM's ID. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ioasid.h"
#include "check.h"

#define VMS 4
#define ROUNDS 4
#define CYCLES 6 /* per round; the last one ends with the VM's teardown */
#define PASIDS 4 /* guest PASIDs per VM */
#define QUOTA 8 /* per VM set: the guest PASIDs and as many probes */
#define WINDOW 32 /* host IDs of VM v: [1 + v * WINDOW, (v + 1) * WINDOW] */
#define LOG_MAX 32

static const ioasid_t guest_pasids[PASIDS] = { 0, 101, 102, 0xFFFFFFFE };

enum role { KVM, DEVICE, IOMMU, AUDIT };

/* A notifier block of one party: the notifier_block first, so the callback
 * finds the party. Global parties (vm NULL) are called on every VM's
 * thread, hence the atomic counts. */
struct party {
	struct notifier_block nb;
	enum role role;
	struct vm *vm;
	atomic_long seen[5]; /* events of guest PASIDs, by action */
	atomic_long probes[5]; /* events of probe IDs (no private data) */
};

/* A guest PASID: the private data of its host ID, so every block finds it
 * in args->pdata. Only its VM's thread touches it (callbacks run on the
 * thread of the operation). */
struct gpasid {
	struct vm *vm;
	ioasid_t spid;
	ioasid_t host;
	bool bound; /* holds its SPID */
	bool torn_down; /* freed by its set's teardown */
	bool kvm_ref, device_ref, iommu_ref; /* references held */
	int log[LOG_MAX]; /* role * 16 + action, in call order */
	int n_log;
};

struct vm {
	int index;
	char mm; /* the process: its address is the MM token */
	ioasid_t base; /* first host ID of its window */
	struct ioasid_set *set; /* written in the setup phase only */
	struct party kvm, device;
	struct gpasid g[PASIDS];
	pthread_t thread;
};

static struct vm vms[VMS];
static struct party iommu, audit;
static pthread_barrier_t barrier;
static ioasid_t capacity0;
static atomic_long cross_lookups; /* other VMs' SPIDs looked up in callbacks */

static int on_event(struct notifier_block *nb, unsigned long action, void *data);

static void party_init(struct party *p, enum role role, int priority, struct vm *vm)
{
	p->nb = (struct notifier_block){ on_event, NULL, priority };
	p->role = role;
	p->vm = vm;
	for (int i = 0; i < 5; i++) {
		atomic_init(&p->seen[i], 0);
		atomic_init(&p->probes[i], 0);
	}
}

static bool own_window(const struct vm *vm, ioasid_t id)
{
	return id >= vm->base && id < vm->base + WINDOW;
}

/* KVM on BIND: the host ID by the guest's PASID, with a reference kept;
 * and the same guest PASID in every other VM names none of this VM's IDs. */
static void kvm_bind(struct gpasid *g, struct ioasid_nb_args *args)
{
	ioasid_t id = ioasid_find_by_spid(args->set, args->spid, true);
	CHECK_EQ(id, args->id);
	if (id == args->id)
		g->kvm_ref = true;
	else if (id != INVALID_IOASID)
		ioasid_put(id);
	CHECK(ioasid_find(args->set, args->id, NULL) == g);
	for (int b = 0; b < VMS; b++) {
		if (b == g->vm->index)
			continue;
		/* Every VM's set lives for the whole cycle phase: this reference
		 * is never the last one. */
		struct ioasid_set *other = ioasid_find_mm_set(&vms[b].mm);
		CHECK(other == vms[b].set);
		if (!other)
			continue;
		ioasid_t n = ioasid_find_by_spid(other, args->spid, false);
		if (n != INVALID_IOASID) {
			atomic_fetch_add(&cross_lookups, 1);
			CHECK(n != args->id);
			/* This VM allocates nothing during the call, so n, which
			 * was VM b's, cannot be this VM's now. */
			CHECK(!own_window(g->vm, n));
			CHECK(IS_ERR(ioasid_find(args->set, n, NULL)));
		}
		ioasid_set_put(other);
	}
}

/* The IOMMU driver on FREE: with holders left the ID is FREE_PENDING
 * (found, never got, its SPID detached); without, it is gone. */
static void iommu_free(struct gpasid *g, struct ioasid_nb_args *args)
{
	bool held = g->device_ref || g->iommu_ref;
	if (held) {
		CHECK(ioasid_find(NULL, args->id, NULL) == g);
		CHECK_EQ(ioasid_get_checked(NULL, args->id), -ENOENT);
		CHECK_EQ(ioasid_attach_spid(args->id, 7), -ENOENT);
	} else {
		CHECK(ioasid_find(NULL, args->id, NULL) == ERR_PTR(-ENOENT));
	}
	if (!g->torn_down)
		CHECK_EQ(ioasid_find_by_spid(args->set, g->spid, false), INVALID_IOASID);
}

static int on_event(struct notifier_block *nb, unsigned long action, void *data)
{
	struct party *p = (struct party *)nb;
	struct ioasid_nb_args *args = data;
	struct gpasid *g = args->pdata;

	CHECK(action >= IOASID_NOTIFY_ALLOC && action <= IOASID_NOTIFY_UNBIND);
	if (action < IOASID_NOTIFY_ALLOC || action > IOASID_NOTIFY_UNBIND)
		return NOTIFY_DONE;
	if (!g) {
		/* A probe of the quota: a VM's chain sees its own only. */
		atomic_fetch_add(&p->probes[action], 1);
		if (p->vm)
			CHECK(args->set == p->vm->set);
		return NOTIFY_DONE;
	}
	atomic_fetch_add(&p->seen[action], 1);
	if (p->vm)
		CHECK(g->vm == p->vm);
	/* ALLOC comes before ioasid_alloc returns the ID: in the window. */
	if (action == IOASID_NOTIFY_ALLOC)
		CHECK(own_window(g->vm, args->id));
	else
		CHECK_EQ(args->id, g->host);
	/* The set, its teardown's FREE included (sent while it still holds
	 * the ID). */
	CHECK(args->set == g->vm->set);
	switch (action) {
	case IOASID_NOTIFY_ALLOC:
		CHECK_EQ(args->spid, INVALID_IOASID);
		break;
	case IOASID_NOTIFY_FREE:
		CHECK_EQ(args->spid, g->bound ? g->spid : INVALID_IOASID);
		break;
	default: /* BIND, UNBIND: the SPID attached or detached */
		CHECK_EQ(args->spid, g->spid);
	}
	CHECK(g->n_log < LOG_MAX);
	if (g->n_log < LOG_MAX)
		g->log[g->n_log++] = (int)p->role * 16 + (int)action;

	switch (p->role) {
	case KVM:
		if (action == IOASID_NOTIFY_BIND) {
			kvm_bind(g, args);
		} else if (action != IOASID_NOTIFY_ALLOC && g->kvm_ref) {
			/* FREE or UNBIND: KVM drops its reference at once; others
			 * still hold one. */
			CHECK(!ioasid_put(args->id));
			g->kvm_ref = false;
		}
		break;
	case DEVICE:
		if (action == IOASID_NOTIFY_BIND) {
			ioasid_t id = ioasid_find_by_spid(args->set, args->spid, true);
			CHECK_EQ(id, args->id);
			g->device_ref = id == args->id;
			if (id != args->id && id != INVALID_IOASID)
				ioasid_put(id);
		} else if (action == IOASID_NOTIFY_UNBIND && g->device_ref) {
			CHECK(!ioasid_put(args->id));
			g->device_ref = false;
		}
		/* On FREE the device driver drains DMA first: it puts later. */
		break;
	case IOMMU:
		if (action == IOASID_NOTIFY_FREE)
			iommu_free(g, args);
		break;
	case AUDIT: {
		/* The three other blocks have seen this event, in order. */
		int n = g->n_log;
		CHECK(n >= 4 && g->log[n - 4] == KVM * 16 + (int)action &&
		      g->log[n - 3] == DEVICE * 16 + (int)action &&
		      g->log[n - 2] == IOMMU * 16 + (int)action);
		break;
	}
	}
	return NOTIFY_OK;
}

/* The log of g is `steps` events, each seen by KVM, the device driver, the
 * IOMMU driver and the audit block in that order. */
static void check_log(const struct gpasid *g, int steps, const int *actions)
{
	static const enum role order[4] = { KVM, DEVICE, IOMMU, AUDIT };
	CHECK_EQ(g->n_log, steps * 4);
	for (int s = 0; s < steps && s * 4 + 3 < g->n_log; s++)
		for (int r = 0; r < 4; r++)
			CHECK_EQ(g->log[s * 4 + r], (int)order[r] * 16 + actions[s]);
}

static int count_ids(ioasid_t id, void *private, void *data)
{
	(void)id;
	(void)private;
	(*(int *)data)++;
	return 0;
}

static int set_size(struct ioasid_set *set)
{
	int n = 0;
	CHECK_EQ(ioasid_set_for_each(set, count_ids, &n), 0);
	return n;
}

/* Every VM reaches the barrier; one of them runs `check` while the others
 * wait at a second one, so it sees every VM between two phases. */
static void sync_point(void (*check)(long), long arg)
{
	int rc = pthread_barrier_wait(&barrier);
	CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
	if (rc == PTHREAD_BARRIER_SERIAL_THREAD && check)
		check(arg);
	rc = pthread_barrier_wait(&barrier);
	CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
}

static void check_live(long expected)
{
	CHECK_EQ(ioasid_space_live_count(NULL), expected);
}

/* Every set exists: the capacity is all reserved, another set is refused. */
static void check_all_sets(long unused)
{
	static char stranger;
	(void)unused;
	CHECK_EQ(ioasid_get_capacity_avail(), capacity0 - VMS * QUOTA);
	struct ioasid_set *set = ioasid_alloc_set(&stranger, 1, IOASID_SET_TYPE_NULL);
	CHECK(IS_ERR(set) && PTR_ERR(set) == -ENOSPC);
	check_live(0);
}

/* Every VM has bound its guest PASIDs: each VM's set maps each SPID to its
 * own host ID, which no other VM's set owns or maps. */
static void check_bound(long unused)
{
	(void)unused;
	check_live(VMS * PASIDS);
	for (int a = 0; a < VMS; a++) {
		for (int i = 0; i < PASIDS; i++) {
			ioasid_t host = vms[a].g[i].host;
			CHECK_EQ(ioasid_find_by_spid(vms[a].set, guest_pasids[i], false), host);
			for (int b = 0; b < VMS; b++) {
				if (b == a)
					continue;
				ioasid_t theirs = ioasid_find_by_spid(vms[b].set, guest_pasids[i], false);
				CHECK_EQ(theirs, vms[b].g[i].host);
				CHECK(theirs != host);
				CHECK(ioasid_find(vms[b].set, host, NULL) == ERR_PTR(-EACCES));
			}
		}
	}
}

/* After the VMs' teardown, before their holders put: the quotas are back
 * at once, the IDs still live (FREE_PENDING). */
static void check_torn_down(long unused)
{
	(void)unused;
	CHECK_EQ(ioasid_get_capacity_avail(), capacity0);
	check_live(VMS * PASIDS);
}

/* VFIO allocates the host PASID, the IOMMU driver binds it and takes its
 * reference; KVM and the device driver take theirs on BIND. */
static void bind_all(struct vm *vm)
{
	struct ioasid_set *other = vms[(vm->index + 1) % VMS].set;
	static const int alloc_bind[2] = { IOASID_NOTIFY_ALLOC, IOASID_NOTIFY_BIND };

	for (int i = 0; i < PASIDS; i++) {
		struct gpasid *g = &vm->g[i];
		g->n_log = 0;
		g->bound = g->torn_down = false;
		g->kvm_ref = g->device_ref = g->iommu_ref = false;
		g->host = ioasid_alloc(vm->set, vm->base, vm->base + WINDOW - 1, g);
		/* Lowest free in the VM's window: every number came back. */
		CHECK_EQ(g->host, vm->base + (ioasid_t)i);
		if (g->host == INVALID_IOASID)
			continue;
		check_log(g, 1, alloc_bind);
		/* Not bound yet: the SPID names nothing. */
		CHECK_EQ(ioasid_find_by_spid(vm->set, g->spid, true), INVALID_IOASID);
		g->bound = true;
		CHECK_EQ(ioasid_attach_spid(g->host, g->spid), 0);
		CHECK_EQ(ioasid_attach_spid(g->host, g->spid), -EEXIST);
		ioasid_get(g->host);
		g->iommu_ref = true;
		check_log(g, 2, alloc_bind);
		CHECK(g->kvm_ref && g->device_ref);
		CHECK_EQ(ioasid_find_by_spid(vm->set, g->spid, false), g->host);
		/* Another VM's set owns none of ours. */
		CHECK_EQ(ioasid_get_checked(other, g->host), -EACCES);
		CHECK_EQ(ioasid_put_checked(other, g->host), -EACCES);
		CHECK(ioasid_find(other, g->host, NULL) == ERR_PTR(-EACCES));
	}
	CHECK_EQ(set_size(vm->set), PASIDS);
}

/* The guest frees its PASIDs while they are bound: FREE_PENDING. */
static void free_bound(struct vm *vm)
{
	static const int steps[3] = { IOASID_NOTIFY_ALLOC, IOASID_NOTIFY_BIND, IOASID_NOTIFY_FREE };
	for (int i = 0; i < PASIDS; i++) {
		struct gpasid *g = &vm->g[i];
		ioasid_free(g->host);
		g->bound = false; /* detached at once */
		check_log(g, 3, steps);
		CHECK(!g->kvm_ref && g->device_ref && g->iommu_ref);
		/* FREE_PENDING: found, not got, not mapped, not walked; a second
		 * free sends nothing. */
		CHECK(ioasid_find(vm->set, g->host, NULL) == g);
		CHECK_EQ(ioasid_get_checked(vm->set, g->host), -ENOENT);
		ioasid_get(g->host); /* a no-op: the puts below still release */
		CHECK_EQ(ioasid_find_by_spid(vm->set, g->spid, false), INVALID_IOASID);
		CHECK_EQ(ioasid_find_by_spid(vm->set, g->spid, true), INVALID_IOASID);
		ioasid_free(g->host);
		check_log(g, 3, steps);
	}
	CHECK_EQ(set_size(vm->set), 0);
	/* They still count against the quota and the set's live count. */
	CHECK_EQ(ioasid_adjust_set(vm->set, PASIDS - 1), -EBUSY);
	ioasid_t probes[QUOTA - PASIDS];
	for (int i = 0; i < QUOTA - PASIDS; i++)
		CHECK_EQ(ioasid_alloc_id(vm->set, vm->base, vm->base + WINDOW - 1, NULL, &probes[i]), 0);
	ioasid_t none = INVALID_IOASID;
	CHECK_EQ(ioasid_alloc_id(vm->set, vm->base, vm->base + WINDOW - 1, NULL, &none), -EDQUOT);
	CHECK_EQ(none, INVALID_IOASID);
	for (int i = 0; i < QUOTA - PASIDS; i++) {
		CHECK(own_window(vm, probes[i]));
		CHECK_EQ(ioasid_set_free(vm->set, probes[i]), 0);
	}
}

/* The device driver and the IOMMU driver put, in the order `device_last`
 * says: exactly two references were left, the second put releases. */
static void put_pending(struct vm *vm, struct ioasid_set *set, bool device_last)
{
	for (int i = 0; i < PASIDS; i++) {
		struct gpasid *g = &vm->g[i];
		int n_log = g->n_log;
		CHECK(g->device_ref && g->iommu_ref);
		CHECK_EQ(ioasid_put_checked(set, g->host), 0);
		if (device_last)
			g->iommu_ref = false;
		else
			g->device_ref = false;
		CHECK(ioasid_find(NULL, g->host, NULL) == g);
		if (device_last) {
			CHECK_EQ(ioasid_put_checked(set, g->host), 1);
			g->device_ref = false;
		} else {
			CHECK(ioasid_put(g->host));
			g->iommu_ref = false;
		}
		/* Released with no further event; its number is free again. */
		CHECK_EQ(g->n_log, n_log);
		CHECK(ioasid_find(NULL, g->host, NULL) == ERR_PTR(-ENOENT));
		CHECK_EQ(ioasid_put_checked(NULL, g->host), -ENOENT);
		CHECK(!ioasid_put(g->host));
	}
}

/* The IOMMU driver unbinds first (UNBIND: KVM and the device driver put),
 * puts its own reference; the guest's free then releases at once. */
static void unbind_then_free(struct vm *vm)
{
	static const int steps[4] = { IOASID_NOTIFY_ALLOC, IOASID_NOTIFY_BIND,
				      IOASID_NOTIFY_UNBIND, IOASID_NOTIFY_FREE };
	for (int i = 0; i < PASIDS; i++) {
		struct gpasid *g = &vm->g[i];
		ioasid_detach_spid(g->host);
		g->bound = false;
		check_log(g, 3, steps);
		CHECK(!g->kvm_ref && !g->device_ref);
		CHECK_EQ(ioasid_find_by_spid(vm->set, g->spid, false), INVALID_IOASID);
		ioasid_detach_spid(g->host); /* nothing to detach: no event */
		check_log(g, 3, steps);
		CHECK(!ioasid_put(g->host));
		g->iommu_ref = false;
		/* Only the allocation's reference is left. */
		CHECK(ioasid_find(vm->set, g->host, NULL) == g);
		ioasid_free(g->host);
		check_log(g, 4, steps);
		CHECK(ioasid_find(NULL, g->host, NULL) == ERR_PTR(-ENOENT));
	}
	CHECK_EQ(set_size(vm->set), 0);
}

/* The VM ends with its PASIDs bound: the set's last put frees them (FREE,
 * FREE_PENDING, detached from the set), its quota goes back at once. */
static void teardown(struct vm *vm)
{
	static const int steps[3] = { IOASID_NOTIFY_ALLOC, IOASID_NOTIFY_BIND, IOASID_NOTIFY_FREE };
	for (int i = 0; i < PASIDS; i++)
		vm->g[i].torn_down = true;
	ioasid_set_put(vm->set);
	for (int i = 0; i < PASIDS; i++) {
		struct gpasid *g = &vm->g[i];
		g->bound = false;
		check_log(g, 3, steps);
		CHECK(!g->kvm_ref && g->device_ref && g->iommu_ref);
		CHECK(ioasid_find(NULL, g->host, NULL) == g);
		CHECK_EQ(ioasid_get_checked(NULL, g->host), -ENOENT);
	}
	/* The token has no set any more; a new one may come. */
	CHECK(ioasid_find_mm_set(&vm->mm) == NULL);
}

static void *vm_main(void *arg)
{
	struct vm *vm = arg;

	for (int round = 0; round < ROUNDS; round++) {
		/* The VM starts: its set, whose chain picks up the parked blocks. */
		vm->set = ioasid_alloc_set(&vm->mm, QUOTA, IOASID_SET_TYPE_MM);
		CHECK(!IS_ERR_OR_NULL(vm->set));
		if (IS_ERR_OR_NULL(vm->set)) {
			vm->set = NULL;
			return NULL;
		}
		struct ioasid_set *again = ioasid_alloc_set(&vm->mm, 1, IOASID_SET_TYPE_MM);
		CHECK(IS_ERR(again) && PTR_ERR(again) == -EEXIST);
		struct ioasid_set *found = ioasid_find_mm_set(&vm->mm);
		CHECK(found == vm->set);
		ioasid_set_put(found);
		sync_point(check_all_sets, 0);

		for (int cycle = 0; cycle < CYCLES; cycle++) {
			bind_all(vm);
			sync_point(check_bound, 0);
			if (cycle == CYCLES - 1)
				break;
			bool unbind_first = cycle % 3 == 1;
			if (unbind_first)
				unbind_then_free(vm);
			else
				free_bound(vm);
			sync_point(check_live, unbind_first ? 0 : VMS * PASIDS);
			if (!unbind_first) {
				put_pending(vm, vm->set, cycle % 2 == 1);
				/* The IDs are gone: a cut below the old live count
				 * passes, and the raise back. */
				CHECK_EQ(ioasid_adjust_set(vm->set, PASIDS - 1), 0);
				CHECK_EQ(ioasid_adjust_set(vm->set, QUOTA), 0);
			}
			sync_point(check_live, 0);
		}

		teardown(vm);
		vm->set = NULL;
		sync_point(check_torn_down, 0);
		put_pending(vm, NULL, round % 2 == 1);
		sync_point(check_live, 0);
	}
	return NULL;
}

/* What each block must have counted. */
static void check_counts(void)
{
	long freed_bound = 0, unbound = 0;
	for (int cycle = 0; cycle < CYCLES - 1; cycle++) {
		if (cycle % 3 == 1)
			unbound++;
		else
			freed_bound++;
	}
	long per_vm = (long)ROUNDS * CYCLES * PASIDS;
	long unbinds = (long)ROUNDS * unbound * PASIDS;
	long probes = (long)ROUNDS * freed_bound * (QUOTA - PASIDS);
	struct party *parties[2 * VMS + 2];
	long scale[2 * VMS + 2];
	int n = 0;
	for (int v = 0; v < VMS; v++) {
		parties[n] = &vms[v].kvm;
		scale[n++] = 1;
		parties[n] = &vms[v].device;
		scale[n++] = 1;
	}
	parties[n] = &iommu;
	scale[n++] = VMS;
	parties[n] = &audit;
	scale[n++] = VMS;
	for (int i = 0; i < n; i++) {
		struct party *p = parties[i];
		CHECK_EQ(atomic_load(&p->seen[IOASID_NOTIFY_ALLOC]), scale[i] * per_vm);
		CHECK_EQ(atomic_load(&p->seen[IOASID_NOTIFY_BIND]), scale[i] * per_vm);
		CHECK_EQ(atomic_load(&p->seen[IOASID_NOTIFY_UNBIND]), scale[i] * unbinds);
		CHECK_EQ(atomic_load(&p->seen[IOASID_NOTIFY_FREE]), scale[i] * per_vm);
		CHECK_EQ(atomic_load(&p->probes[IOASID_NOTIFY_ALLOC]), scale[i] * probes);
		CHECK_EQ(atomic_load(&p->probes[IOASID_NOTIFY_FREE]), scale[i] * probes);
		CHECK_EQ(atomic_load(&p->probes[IOASID_NOTIFY_BIND]), 0);
		CHECK_EQ(atomic_load(&p->probes[IOASID_NOTIFY_UNBIND]), 0);
	}
}

int main(void)
{
	/* A capacity that fits the VMs' quotas exactly. */
	CHECK_EQ(ioasid_get_capacity(), 0xFFFFF);
	CHECK_EQ(ioasid_install_capacity(VMS * QUOTA), 0);
	CHECK_EQ(ioasid_install_capacity(VMS * QUOTA), -EBUSY);
	capacity0 = ioasid_get_capacity_avail();
	CHECK_EQ(ioasid_get_capacity(), VMS * QUOTA);
	CHECK_EQ(capacity0, VMS * QUOTA);

	/* The parties register before any VM's set exists: KVM's and the device
	 * driver's blocks are parked on each VM's token. */
	party_init(&audit, AUDIT, IOASID_PRIO_LAST, NULL);
	party_init(&iommu, IOMMU, IOASID_PRIO_IOMMU, NULL);
	CHECK_EQ(ioasid_register_notifier(NULL, &audit.nb), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &iommu.nb), 0);
	for (int v = 0; v < VMS; v++) {
		struct vm *vm = &vms[v];
		vm->index = v;
		vm->base = 1 + (ioasid_t)v * WINDOW;
		for (int i = 0; i < PASIDS; i++) {
			vm->g[i].vm = vm;
			vm->g[i].spid = guest_pasids[i];
		}
		party_init(&vm->device, DEVICE, IOASID_PRIO_DEVICE, vm);
		party_init(&vm->kvm, KVM, IOASID_PRIO_CPU, vm);
		CHECK(ioasid_find_mm_set(&vm->mm) == NULL);
		CHECK_EQ(ioasid_register_notifier_mm(&vm->mm, &vm->device.nb), 0);
		CHECK_EQ(ioasid_register_notifier_mm(&vm->mm, &vm->kvm.nb), 0);
		CHECK_EQ(ioasid_register_notifier_mm(&vm->mm, &vm->kvm.nb), -EEXIST);
	}
	CHECK_EQ(pthread_barrier_init(&barrier, NULL, VMS), 0);

	for (int v = 0; v < VMS; v++)
		CHECK_EQ(pthread_create(&vms[v].thread, NULL, vm_main, &vms[v]), 0);
	for (int v = 0; v < VMS; v++)
		pthread_join(vms[v].thread, NULL);
	pthread_barrier_destroy(&barrier);

	check_counts();
	CHECK(atomic_load(&cross_lookups) > 0);
	CHECK_EQ(ioasid_space_live_count(NULL), 0);
	CHECK_EQ(ioasid_get_capacity_avail(), capacity0);

	/* Unregistered: a new set of VM 0's token reaches no block. */
	for (int v = 0; v < VMS; v++) {
		ioasid_unregister_notifier_mm(&vms[v].mm, &vms[v].kvm.nb);
		ioasid_unregister_notifier_mm(&vms[v].mm, &vms[v].device.nb);
	}
	ioasid_unregister_notifier(NULL, &iommu.nb);
	ioasid_unregister_notifier(NULL, &audit.nb);
	struct ioasid_set *set = ioasid_alloc_set(&vms[0].mm, QUOTA, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(set));
	if (!IS_ERR_OR_NULL(set)) {
		ioasid_t id = ioasid_alloc(set, 1, WINDOW, &vms[0].g[0]);
		CHECK_EQ(id, 1);
		ioasid_free(id);
		ioasid_set_put(set);
	}
	CHECK_EQ(atomic_load(&vms[0].kvm.seen[IOASID_NOTIFY_ALLOC]), (long)ROUNDS * CYCLES * PASIDS);
	CHECK_EQ(atomic_load(&iommu.seen[IOASID_NOTIFY_ALLOC]), (long)VMS * ROUNDS * CYCLES * PASIDS);
	CHECK_EQ(vms[0].g[0].n_log, 12); /* the last teardown's, untouched */
	CHECK_EQ(ioasid_space_live_count(NULL), 0);
	CHECK_EQ(ioasid_get_capacity_avail(), capacity0);
	return check_report("guest_sva");
}
