/* Notifications (SPEC 6.6): struct notifier_block chains, global and per
 * set, in priority order with the stop mask; ALLOC and exactly-once FREE
 * (FREE_PENDING, set teardown, last put); the arguments; ioasid_notify;
 * MM registrations; callbacks that call back into the library; unregister
 * that waits for a call in flight; every error and NULL. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "ioasid.h"
#include "check.h"

/* The kernel's layout of struct notifier_block. */
_Static_assert(offsetof(struct notifier_block, notifier_call) == 0, "notifier_call first");
_Static_assert(offsetof(struct notifier_block, next) == sizeof(void *), "next second");
_Static_assert(offsetof(struct notifier_block, priority) == 2 * sizeof(void *), "priority third");
_Static_assert(NOTIFY_DONE == 0 && NOTIFY_OK == 1 && NOTIFY_STOP_MASK == 0x8000, "values");
_Static_assert(IOASID_NOTIFY_ALL == 1u && IOASID_NOTIFY_SET == 2u, "flags");
_Static_assert(IOASID_NOTIFY_ALLOC == 1 && IOASID_NOTIFY_FREE == 2 && IOASID_NOTIFY_BIND == 3 &&
		       IOASID_NOTIFY_UNBIND == 4,
	       "events");
_Static_assert(IOASID_PRIO_LAST < IOASID_PRIO_IOMMU && IOASID_PRIO_IOMMU < IOASID_PRIO_DEVICE &&
		       IOASID_PRIO_DEVICE < IOASID_PRIO_CPU,
	       "priorities");

/* A recording block: the notifier_block first, so the callback finds it. */
struct rec {
	struct notifier_block nb;
	const char *name;
	int ret;
};

#define MAX_EVENTS 64
struct event {
	const char *name;
	unsigned long action;
	struct ioasid_nb_args args;
};
static struct event events[MAX_EVENTS];
static int n_events;

static int record(struct notifier_block *nb, unsigned long action, void *data)
{
	struct rec *r = (struct rec *)nb;
	if (n_events < MAX_EVENTS) {
		events[n_events].name = r->name;
		events[n_events].action = action;
		memcpy(&events[n_events].args, data, sizeof(struct ioasid_nb_args));
		n_events++;
	}
	return r->ret;
}

#define REC(var, prio, label) struct rec var = { { record, NULL, (prio) }, (label), NOTIFY_OK }

static void reset(void)
{
	n_events = 0;
}

static int count(unsigned long action, ioasid_t id)
{
	int n = 0;
	for (int i = 0; i < n_events; i++)
		n += events[i].action == action && events[i].args.id == id;
	return n;
}

static long live(void)
{
	return ioasid_space_live_count(NULL);
}

static void test_errors_and_null(void)
{
	DECLARE_IOASID_SET(set);
	REC(a, 0, "a");
	struct notifier_block no_call = { NULL, NULL, 0 };
	int token;

	CHECK_EQ(ioasid_register_notifier(NULL, NULL), -EINVAL);
	CHECK_EQ(ioasid_register_notifier(&set, NULL), -EINVAL);
	CHECK_EQ(ioasid_register_notifier(NULL, &no_call), -EINVAL);
	CHECK_EQ(ioasid_register_notifier(&set, &no_call), -EINVAL);
	CHECK_EQ(ioasid_register_notifier(NULL, &a.nb), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &a.nb), -EEXIST);
	/* The same block on another chain is another registration. */
	CHECK_EQ(ioasid_register_notifier(&set, &a.nb), 0);
	CHECK_EQ(ioasid_register_notifier(&set, &a.nb), -EEXIST);
	CHECK(a.nb.next == NULL); /* never written */
	ioasid_unregister_notifier(&set, &a.nb);
	ioasid_unregister_notifier(&set, &a.nb); /* not on it any more: ignored */
	ioasid_unregister_notifier(NULL, &a.nb);
	ioasid_unregister_notifier(NULL, NULL);
	ioasid_unregister_notifier(&set, NULL);
	ioasid_unregister_notifier(NULL, &no_call);
	CHECK_EQ(ioasid_register_notifier(NULL, &a.nb), 0); /* again after unregister */
	ioasid_unregister_notifier(NULL, &a.nb);

	CHECK_EQ(ioasid_register_notifier_mm(&token, NULL), -EINVAL);
	CHECK_EQ(ioasid_register_notifier_mm(NULL, NULL), -EINVAL);
	CHECK_EQ(ioasid_register_notifier_mm(&token, &no_call), -EINVAL);
	CHECK_EQ(ioasid_register_notifier_mm(&token, &a.nb), 0);
	CHECK_EQ(ioasid_register_notifier_mm(&token, &a.nb), -EEXIST);
	CHECK_EQ(ioasid_register_notifier_mm(NULL, &a.nb), 0); /* another token */
	ioasid_unregister_notifier_mm(NULL, &a.nb);
	ioasid_unregister_notifier_mm(&token, &a.nb);
	ioasid_unregister_notifier_mm(&token, &a.nb);
	ioasid_unregister_notifier_mm(&token, NULL);
	ioasid_unregister_notifier_mm(NULL, NULL);
	CHECK_EQ(ioasid_register_notifier_mm(&token, &a.nb), 0);
	ioasid_unregister_notifier_mm(&token, &a.nb);

	ioasid_t id = ioasid_alloc(&set, 1, 100, NULL);
	CHECK(id != INVALID_IOASID);
	CHECK_EQ(ioasid_notify(id, 0, IOASID_NOTIFY_ALL), -EINVAL);
	CHECK_EQ(ioasid_notify(id, 5, IOASID_NOTIFY_ALL), -EINVAL);
	CHECK_EQ(ioasid_notify(id, (unsigned)-1, IOASID_NOTIFY_ALL), -EINVAL);
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_BIND, 0), -EINVAL);
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_BIND, 4), -EINVAL);
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_BIND, IOASID_NOTIFY_ALL | 8), -EINVAL);
	/* Arguments are checked before the ID. */
	CHECK_EQ(ioasid_notify(INVALID_IOASID, 0, 0), -EINVAL);
	CHECK_EQ(ioasid_notify(INVALID_IOASID, IOASID_NOTIFY_BIND, IOASID_NOTIFY_ALL), -ENOENT);
	CHECK_EQ(ioasid_notify(0xFFFFFFFE, IOASID_NOTIFY_BIND, IOASID_NOTIFY_ALL), -ENOENT);
	CHECK_EQ(ioasid_notify(id + 1, IOASID_NOTIFY_BIND, IOASID_NOTIFY_SET), -ENOENT);
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_UNBIND, IOASID_NOTIFY_ALL | IOASID_NOTIFY_SET), 0);
	ioasid_free(id);
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_BIND, IOASID_NOTIFY_ALL), -ENOENT);
	ioasid_set_destroy(&set);
}

static void test_order_stop_and_arguments(void)
{
	DECLARE_IOASID_SET(vm);
	REC(cpu, IOASID_PRIO_CPU, "cpu");
	REC(dev, IOASID_PRIO_DEVICE, "dev");
	REC(iommu, IOASID_PRIO_IOMMU, "iommu");
	REC(last, IOASID_PRIO_LAST, "last");
	REC(iommu2, IOASID_PRIO_IOMMU, "iommu2");
	REC(set_lo, 0, "set_lo");
	REC(set_hi, 10, "set_hi");
	int data = 7;

	/* Registered out of order; equal priorities keep registration order. */
	CHECK_EQ(ioasid_register_notifier(NULL, &iommu.nb), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &last.nb), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &cpu.nb), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &iommu2.nb), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &dev.nb), 0);
	CHECK_EQ(ioasid_register_notifier(&vm, &set_lo.nb), 0);
	CHECK_EQ(ioasid_register_notifier(&vm, &set_hi.nb), 0);
	reset();
	ioasid_t id = ioasid_alloc(&vm, 0xFFFF0, 0xFFFFF, &data);
	CHECK_EQ(id, 0xFFFF0);
	const char *want[] = { "set_hi", "set_lo", "cpu", "dev", "iommu", "iommu2", "last" };
	CHECK_EQ(n_events, 7);
	for (int i = 0; i < 7 && i < n_events; i++) {
		CHECK(strcmp(events[i].name, want[i]) == 0);
		CHECK_EQ(events[i].action, IOASID_NOTIFY_ALLOC);
		CHECK_EQ(events[i].args.id, id);
		CHECK_EQ(events[i].args.spid, INVALID_IOASID);
		CHECK(events[i].args.set == &vm);
		CHECK(events[i].args.pdata == &data);
	}

	/* A stop ends its chain only; NOTIFY_DONE goes on. */
	set_hi.ret = NOTIFY_STOP_MASK | NOTIFY_OK;
	dev.ret = NOTIFY_STOP_MASK;
	cpu.ret = NOTIFY_DONE;
	reset();
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_BIND, IOASID_NOTIFY_SET | IOASID_NOTIFY_ALL), 0);
	CHECK_EQ(n_events, 3);
	CHECK(n_events == 3 && strcmp(events[0].name, "set_hi") == 0 &&
	      strcmp(events[1].name, "cpu") == 0 && strcmp(events[2].name, "dev") == 0);
	CHECK_EQ(count(IOASID_NOTIFY_BIND, id), 3);
	set_hi.ret = dev.ret = cpu.ret = NOTIFY_OK;

	/* Flags choose the chains. */
	reset();
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_UNBIND, IOASID_NOTIFY_SET), 0);
	CHECK_EQ(n_events, 2);
	reset();
	CHECK_EQ(ioasid_notify(id, IOASID_NOTIFY_FREE, IOASID_NOTIFY_ALL), 0);
	CHECK_EQ(n_events, 5);
	CHECK(ioasid_find(&vm, id, NULL) == &data); /* by hand: nothing freed */

	/* set_data changes what later events carry. */
	int other = 8;
	CHECK_EQ(ioasid_set_data(id, &other), 0);
	reset();
	ioasid_free(id);
	CHECK_EQ(count(IOASID_NOTIFY_FREE, id), 7);
	CHECK(n_events > 0 && events[0].args.pdata == &other && events[0].args.set == &vm);

	/* The anonymous set of ioasid_alloc(NULL): args.set is NULL. */
	reset();
	id = ioasid_alloc(NULL, 1, 100, NULL);
	CHECK(id != INVALID_IOASID);
	CHECK_EQ(n_events, 5);
	CHECK(n_events > 0 && events[0].args.set == NULL && events[0].args.pdata == NULL);
	ioasid_free(id);

	ioasid_unregister_notifier(NULL, &iommu.nb);
	ioasid_unregister_notifier(NULL, &last.nb);
	ioasid_unregister_notifier(NULL, &cpu.nb);
	ioasid_unregister_notifier(NULL, &iommu2.nb);
	ioasid_unregister_notifier(NULL, &dev.nb);
	ioasid_unregister_notifier(&vm, &set_lo.nb);
	ioasid_unregister_notifier(&vm, &set_hi.nb);
	reset();
	id = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_free(id);
	CHECK_EQ(n_events, 0);
	ioasid_set_destroy(&vm);
	CHECK_EQ(live(), 0);
}

static void test_free_exactly_once(void)
{
	DECLARE_IOASID_SET(vm);
	REC(g, 0, "g");
	REC(s, 0, "s");

	CHECK_EQ(ioasid_register_notifier(NULL, &g.nb), 0);
	CHECK_EQ(ioasid_register_notifier(&vm, &s.nb), 0);

	/* FREE_PENDING: FREE at the free, nothing at the last put. */
	ioasid_t id = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_get(id);
	reset();
	ioasid_free(id);
	CHECK_EQ(count(IOASID_NOTIFY_FREE, id), 2);
	ioasid_free(id); /* FREE_PENDING: not freed again */
	CHECK(ioasid_put(id)); /* released by the last put */
	CHECK_EQ(count(IOASID_NOTIFY_FREE, id), 2);
	CHECK_EQ(n_events, 2);

	/* The last put of an ID never freed sends FREE. */
	id = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_get(id);
	reset();
	CHECK(!ioasid_put(id));
	CHECK_EQ(n_events, 0);
	CHECK(ioasid_put(id));
	CHECK_EQ(count(IOASID_NOTIFY_FREE, id), 2);
	CHECK_EQ(ioasid_put_checked(NULL, id), -ENOENT);
	CHECK_EQ(n_events, 2);

	/* Teardown: every ID once, a referenced one included; its last put
	 * sends nothing more. */
	ioasid_t a = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_t b = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_get(b);
	reset();
	ioasid_set_destroy(&vm);
	CHECK_EQ(count(IOASID_NOTIFY_FREE, a), 2);
	CHECK_EQ(count(IOASID_NOTIFY_FREE, b), 2);
	CHECK_EQ(n_events, 4);
	CHECK(ioasid_put(b));
	CHECK_EQ(n_events, 4);
	/* The set's chain ended with it; the global block stays. */
	reset();
	id = ioasid_alloc(&vm, 1, 100, NULL);
	CHECK_EQ(n_events, 1);
	CHECK(n_events == 1 && strcmp(events[0].name, "g") == 0);
	ioasid_set_destroy(&vm);
	ioasid_unregister_notifier(&vm, &s.nb); /* gone already: ignored */
	ioasid_unregister_notifier(NULL, &g.nb);
	CHECK_EQ(live(), 0);
}

/* A freed number comes back only after its FREE reached every chain: an
 * exact alloc of it from the FREE callback fails (the C layer sends FREE
 * at the end of the call, and the number waits for it), one after the free
 * returns succeeds; a FREE_PENDING number waits for its last put too. */
static DECLARE_IOASID_SET(reuse_set);
static DECLARE_IOASID_SET(reuse_other);
static ioasid_t reuse_probe;
static int reuse_frees;

static int reuse(struct notifier_block *nb, unsigned long action, void *data)
{
	struct ioasid_nb_args *args = data;
	(void)nb;
	if (action != IOASID_NOTIFY_FREE || args->set != &reuse_set)
		return NOTIFY_DONE;
	reuse_frees++;
	reuse_probe = ioasid_alloc(&reuse_other, args->id, args->id, NULL);
	if (reuse_probe != INVALID_IOASID)
		ioasid_free(reuse_probe);
	return NOTIFY_OK;
}

static void test_no_reuse_before_free(void)
{
	static const ioasid_t edges[] = { 1, 0xFFFFF, 0xFFFFFFFE };
	struct notifier_block nb = { reuse, NULL, 0 };
	CHECK_EQ(ioasid_register_notifier(NULL, &nb), 0);
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		ioasid_t id = edges[i];
		reuse_frees = 0;
		CHECK_EQ(ioasid_alloc(&reuse_set, id, id, NULL), id);
		ioasid_free(id);
		CHECK_EQ(reuse_frees, 1);
		CHECK_EQ(reuse_probe, INVALID_IOASID);
		CHECK_EQ(ioasid_alloc(&reuse_set, id, id, NULL), id); /* free returned: back */
		CHECK_EQ(ioasid_set_free(&reuse_set, id), 0);
		CHECK_EQ(reuse_frees, 2);
		CHECK_EQ(reuse_probe, INVALID_IOASID);

		/* FREE_PENDING: FREE at the free, the number at the last put. */
		CHECK_EQ(ioasid_alloc(&reuse_set, id, id, NULL), id);
		CHECK_EQ(ioasid_get_checked(&reuse_set, id), 0);
		ioasid_free(id);
		CHECK_EQ(reuse_frees, 3);
		CHECK_EQ(reuse_probe, INVALID_IOASID);
		CHECK_EQ(ioasid_alloc(&reuse_other, id, id, NULL), INVALID_IOASID);
		CHECK(ioasid_put(id));
		CHECK_EQ(ioasid_alloc(&reuse_other, id, id, NULL), id);
		ioasid_free(id);
		CHECK_EQ(reuse_frees, 3); /* the other set's FREE is not ours */
	}
	ioasid_unregister_notifier(NULL, &nb);
	ioasid_set_destroy(&reuse_set);
	ioasid_set_destroy(&reuse_other);
	CHECK_EQ(live(), 0);
}

static void test_every_space_reaches_the_global_chain(void)
{
	REC(g, 0, "g");
	struct ioasid_space *space = ioasid_space_create(0, 0xFFFFFFFE, IOASID_POLICY_LOWEST);
	struct ioasid_set set;
	memset(&set, 0, sizeof(set));
	CHECK(space != NULL);
	CHECK_EQ(ioasid_set_init(&set, space, 0), 0);
	CHECK_EQ(ioasid_register_notifier(NULL, &g.nb), 0);
	reset();
	ioasid_t id = ioasid_alloc(&set, 0xFFFFFFFE, 0xFFFFFFFE, &g);
	CHECK_EQ(id, 0xFFFFFFFE);
	CHECK_EQ(ioasid_set_free(&set, id), 0);
	CHECK_EQ(n_events, 2);
	CHECK(n_events == 2 && events[0].action == IOASID_NOTIFY_ALLOC &&
	      events[0].args.set == &set && events[0].args.pdata == &g);
	CHECK(n_events == 2 && events[1].action == IOASID_NOTIFY_FREE && events[1].args.id == id);
	/* ID 0 of a space, and the set's teardown. */
	reset();
	id = ioasid_alloc(&set, 0, 0, NULL);
	CHECK_EQ(id, 0);
	ioasid_set_destroy(&set);
	CHECK_EQ(count(IOASID_NOTIFY_FREE, 0), 1);
	ioasid_unregister_notifier(NULL, &g.nb);
	ioasid_space_destroy(space);
}

/* Callbacks that call back into the library. */
static DECLARE_IOASID_SET(reentrant_set);
static ioasid_t child_id = INVALID_IOASID;
static int reentrant_marker;

static int reentrant(struct notifier_block *nb, unsigned long action, void *data)
{
	struct ioasid_nb_args *args = data;
	(void)nb;
	if (args->pdata != &reentrant_marker)
		return NOTIFY_DONE;
	if (action == IOASID_NOTIFY_ALLOC) {
		CHECK(ioasid_find(&reentrant_set, args->id, NULL) == &reentrant_marker);
		CHECK_EQ(ioasid_get_checked(&reentrant_set, args->id), 0);
		CHECK_EQ(ioasid_put_checked(&reentrant_set, args->id), 0);
		child_id = ioasid_alloc(&reentrant_set, 1, 100, NULL);
		CHECK(child_id != INVALID_IOASID);
		/* Waiting functions work: no read-side section is held. */
		CHECK_EQ(ioasid_set_data(args->id, &reentrant_marker), 0);
		ioasid_synchronize();
	} else if (action == IOASID_NOTIFY_FREE) {
		ioasid_free(child_id);
		CHECK(IS_ERR(ioasid_find(NULL, child_id, NULL)));
	}
	return NOTIFY_OK;
}

static void test_callbacks_call_back(void)
{
	struct notifier_block nb = { reentrant, NULL, 0 };
	CHECK_EQ(ioasid_register_notifier(&reentrant_set, &nb), 0);
	ioasid_t id = ioasid_alloc(&reentrant_set, 1, 100, &reentrant_marker);
	CHECK(id != INVALID_IOASID);
	CHECK_EQ(live(), 2);
	ioasid_free(id);
	CHECK_EQ(live(), 0);
	ioasid_unregister_notifier(&reentrant_set, &nb);
	ioasid_set_destroy(&reentrant_set);
}

/* A block that unregisters itself from its own call. */
static int self_calls;
static int self_unregister(struct notifier_block *nb, unsigned long action, void *data)
{
	(void)action;
	(void)data;
	self_calls++;
	ioasid_unregister_notifier(NULL, nb);
	return NOTIFY_OK;
}

static void test_self_unregister(void)
{
	DECLARE_IOASID_SET(set);
	struct notifier_block nb = { self_unregister, NULL, 0 };
	CHECK_EQ(ioasid_register_notifier(NULL, &nb), 0);
	ioasid_t id = ioasid_alloc(&set, 1, 100, NULL);
	ioasid_free(id);
	CHECK_EQ(self_calls, 1);
	CHECK_EQ(ioasid_register_notifier(NULL, &nb), 0); /* it was off the chain */
	ioasid_unregister_notifier(NULL, &nb);
	ioasid_set_destroy(&set);
}

/* Unregister waits for the call in flight on another thread. */
static atomic_int in_call, unregistering, call_done;
static int slow(struct notifier_block *nb, unsigned long action, void *data)
{
	(void)nb;
	(void)data;
	if (action != IOASID_NOTIFY_ALLOC)
		return NOTIFY_DONE;
	atomic_store(&in_call, 1);
	while (!atomic_load(&unregistering))
		sched_yield();
	/* Give unregister every chance to return early (it must not). */
	struct timespec ms = { 0, 1000000 };
	for (int i = 0; i < 30; i++)
		nanosleep(&ms, NULL);
	atomic_store(&call_done, 1);
	return NOTIFY_OK;
}

static DECLARE_IOASID_SET(slow_set);
static void *allocate(void *arg)
{
	ioasid_t *id = arg;
	*id = ioasid_alloc(&slow_set, 1, 100, NULL);
	return NULL;
}

static void test_unregister_waits(void)
{
	struct notifier_block nb = { slow, NULL, 0 };
	pthread_t thread;
	ioasid_t id = INVALID_IOASID;
	CHECK_EQ(ioasid_register_notifier(&slow_set, &nb), 0);
	CHECK_EQ(pthread_create(&thread, NULL, allocate, &id), 0);
	while (!atomic_load(&in_call))
		sched_yield();
	atomic_store(&unregistering, 1);
	ioasid_unregister_notifier(&slow_set, &nb);
	CHECK(atomic_load(&call_done));
	pthread_join(thread, NULL);
	CHECK(id != INVALID_IOASID);
	ioasid_set_destroy(&slow_set);
	CHECK_EQ(live(), 0);
}

/* Threads allocate while blocks come and go; a steady block counts. */
static atomic_long steady_alloc, steady_free;
static int steady(struct notifier_block *nb, unsigned long action, void *data)
{
	(void)nb;
	(void)data;
	if (action == IOASID_NOTIFY_ALLOC)
		atomic_fetch_add(&steady_alloc, 1);
	else if (action == IOASID_NOTIFY_FREE)
		atomic_fetch_add(&steady_free, 1);
	return NOTIFY_OK;
}

static int noop(struct notifier_block *nb, unsigned long action, void *data)
{
	(void)nb;
	(void)action;
	(void)data;
	return NOTIFY_DONE;
}

#define THREADS 4
#define STEPS 3000
static atomic_long allocated;
static void *churn(void *arg)
{
	(void)arg;
	DECLARE_IOASID_SET(mine);
	for (int i = 0; i < STEPS; i++) {
		ioasid_t id = ioasid_alloc(&mine, 1, 16, NULL);
		if (id == INVALID_IOASID)
			continue;
		atomic_fetch_add(&allocated, 1);
		if (i % 3 == 0)
			ioasid_get(id);
		ioasid_free(id);
		if (i % 3 == 0)
			ioasid_put(id);
	}
	ioasid_set_destroy(&mine);
	return NULL;
}

static void test_threads(void)
{
	struct notifier_block keep = { steady, NULL, 0 };
	struct notifier_block come_go[8];
	pthread_t threads[THREADS];
	CHECK_EQ(ioasid_register_notifier(NULL, &keep), 0);
	for (int t = 0; t < THREADS; t++)
		CHECK_EQ(pthread_create(&threads[t], NULL, churn, NULL), 0);
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 8; i++) {
			come_go[i] = (struct notifier_block){ noop, NULL, i - 4 };
			CHECK_EQ(ioasid_register_notifier(NULL, &come_go[i]), 0);
		}
		for (int i = 0; i < 8; i++)
			ioasid_unregister_notifier(NULL, &come_go[i]);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(threads[t], NULL);
	ioasid_unregister_notifier(NULL, &keep);
	CHECK(atomic_load(&allocated) > 0);
	CHECK_EQ(atomic_load(&steady_alloc), atomic_load(&allocated));
	CHECK_EQ(atomic_load(&steady_free), atomic_load(&allocated));
	CHECK_EQ(live(), 0);
}

/* MM registrations: parked until the token's MM set exists, attached at
 * once when it does, parked again when it is torn down, no replay. */
static void test_mm_registrations(void)
{
	int mm, other_mm;
	REC(early, 5, "early");
	REC(late, 1, "late");

	/* Parked: no set of this token yet; its events are not replayed. */
	CHECK_EQ(ioasid_register_notifier_mm(&mm, &early.nb), 0);
	CHECK_EQ(ioasid_register_notifier_mm(&mm, &early.nb), -EEXIST);
	reset();
	struct ioasid_set *vm = ioasid_alloc_set(&mm, 16, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(vm));
	struct ioasid_set *other = ioasid_alloc_set(&other_mm, 16, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(other));
	CHECK_EQ(n_events, 0);
	ioasid_t a = ioasid_alloc(vm, 1, 100, &mm);
	ioasid_t o = ioasid_alloc(other, 1, 100, NULL);
	CHECK(a != INVALID_IOASID && o != INVALID_IOASID);
	CHECK_EQ(n_events, 1); /* the other token's set: not on its chain */
	CHECK(n_events == 1 && events[0].action == IOASID_NOTIFY_ALLOC && events[0].args.id == a &&
	      events[0].args.set == vm && events[0].args.pdata == &mm);

	/* The set exists: attached at once. */
	CHECK_EQ(ioasid_register_notifier_mm(&mm, &late.nb), 0);
	CHECK_EQ(ioasid_register_notifier_mm(&mm, &late.nb), -EEXIST);
	/* The plain chain of the same set is another chain. */
	CHECK_EQ(ioasid_register_notifier(vm, &late.nb), 0);
	ioasid_unregister_notifier(vm, &late.nb);
	reset();
	CHECK_EQ(ioasid_notify(a, IOASID_NOTIFY_BIND, IOASID_NOTIFY_SET), 0);
	CHECK_EQ(n_events, 2);
	CHECK(n_events == 2 && strcmp(events[0].name, "early") == 0 &&
	      strcmp(events[1].name, "late") == 0);

	/* Teardown by the last put: FREE to both, then parked again. */
	ioasid_get(a);
	reset();
	ioasid_set_put(vm);
	CHECK_EQ(count(IOASID_NOTIFY_FREE, a), 2);
	CHECK(ioasid_put(a)); /* FREE_PENDING, detached: nothing more */
	CHECK_EQ(n_events, 2);

	/* A new MM set of the token: both attached again, nothing replayed. */
	reset();
	vm = ioasid_alloc_set(&mm, 16, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(vm));
	CHECK_EQ(n_events, 0);
	a = ioasid_alloc(vm, 1, 100, NULL);
	CHECK_EQ(count(IOASID_NOTIFY_ALLOC, a), 2);

	/* Unregistered: from the set's chain, or from the parked blocks. */
	ioasid_unregister_notifier_mm(&mm, &early.nb);
	reset();
	ioasid_free(a);
	CHECK_EQ(n_events, 1);
	CHECK(n_events == 1 && strcmp(events[0].name, "late") == 0);
	ioasid_set_put(vm);
	ioasid_unregister_notifier_mm(&mm, &late.nb);
	CHECK_EQ(ioasid_register_notifier_mm(&mm, &late.nb), 0);
	ioasid_unregister_notifier_mm(&mm, &late.nb);
	ioasid_free(o);
	ioasid_set_put(other);
	CHECK_EQ(live(), 0);
}

/* BIND on attach_spid, UNBIND on detach_spid, none when a free detaches;
 * args.spid is the SPID (INVALID_IOASID when none). */
static void test_bind_unbind(void)
{
	DECLARE_IOASID_SET(vm);
	REC(s, 0, "s");
	CHECK_EQ(ioasid_register_notifier(&vm, &s.nb), 0);
	ioasid_t a = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_t b = ioasid_alloc(&vm, 1, 100, NULL);
	reset();
	CHECK_EQ(ioasid_attach_spid(a, 101), 0);
	CHECK_EQ(ioasid_attach_spid(b, 101), -EEXIST); /* no BIND on error */
	CHECK_EQ(ioasid_attach_spid(b, 0xFFFFF), 0);
	CHECK_EQ(n_events, 2);
	CHECK(n_events == 2 && events[0].action == IOASID_NOTIFY_BIND && events[0].args.id == a &&
	      events[0].args.spid == 101 && events[0].args.set == &vm);
	CHECK(n_events == 2 && events[1].args.id == b && events[1].args.spid == 0xFFFFF);
	reset();
	ioasid_detach_spid(a);
	ioasid_detach_spid(a); /* none left: no UNBIND */
	CHECK_EQ(n_events, 1);
	CHECK(n_events == 1 && events[0].action == IOASID_NOTIFY_UNBIND && events[0].args.spid == 101);
	reset();
	ioasid_free(b); /* detaches its SPID: FREE only, with the SPID */
	CHECK_EQ(n_events, 1);
	CHECK(n_events == 1 && events[0].action == IOASID_NOTIFY_FREE &&
	      events[0].args.spid == 0xFFFFF);
	reset();
	ioasid_free(a);
	CHECK(n_events == 1 && events[0].args.spid == INVALID_IOASID);
	ioasid_unregister_notifier(&vm, &s.nb);
	ioasid_set_destroy(&vm);
	CHECK_EQ(live(), 0);
}

int main(void)
{
	test_errors_and_null();
	test_order_stop_and_arguments();
	test_free_exactly_once();
	test_no_reuse_before_free();
	test_every_space_reaches_the_global_chain();
	test_callbacks_call_back();
	test_self_unregister();
	test_unregister_waits();
	test_mm_registrations();
	test_bind_unbind();
	test_threads();
	return check_report("notify");
}
