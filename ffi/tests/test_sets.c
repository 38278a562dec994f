/* Sets with tokens, set references and the system capacity (SPEC 6.4):
 * ioasid_alloc_set, ioasid_set_get/put, ioasid_find_mm_set,
 * ioasid_adjust_set, ioasid_install_capacity, ioasid_get_capacity(_avail);
 * every error, NULL everywhere, capacity accounting, MM token uniqueness
 * (also under racing threads), teardown by the last put (IDs still
 * referenced go FREE_PENDING, detached; custom allocator hooks run), and
 * these sets with every set-taking function. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "ioasid.h"
#include "check.h"

static long live(void)
{
	return ioasid_space_live_count(NULL);
}

static char mm_a, mm_b, mm_c, mm_race; /* tokens: their addresses */

static void test_alloc_set_errors(void)
{
	ioasid_t avail = ioasid_get_capacity_avail();

	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, 0, IOASID_SET_TYPE_MM)), -EINVAL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, 0, IOASID_SET_TYPE_NULL)), -EINVAL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, 1, 0)), -EINVAL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, 1, 3)), -EINVAL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, 1, -1)), -EINVAL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(NULL, 1, IOASID_SET_TYPE_MM)), -EINVAL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, avail + 1, IOASID_SET_TYPE_NULL)), -ENOSPC);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, INVALID_IOASID, IOASID_SET_TYPE_MM)), -ENOSPC);
	/* Nothing changed. */
	CHECK_EQ(ioasid_get_capacity_avail(), avail);
	CHECK(ioasid_find_mm_set(&mm_a) == NULL);

	/* MM tokens: one set each; NULL-type tokens may repeat (NULL too). */
	struct ioasid_set *a = ioasid_alloc_set(&mm_a, 10, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(a));
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(&mm_a, 10, IOASID_SET_TYPE_MM)), -EEXIST);
	struct ioasid_set *n1 = ioasid_alloc_set(&mm_a, 10, IOASID_SET_TYPE_NULL);
	struct ioasid_set *n2 = ioasid_alloc_set(&mm_a, 10, IOASID_SET_TYPE_NULL);
	struct ioasid_set *n3 = ioasid_alloc_set(NULL, 10, IOASID_SET_TYPE_NULL);
	CHECK(!IS_ERR_OR_NULL(n1) && !IS_ERR_OR_NULL(n2) && !IS_ERR_OR_NULL(n3));
	CHECK(n1 != n2 && n1 != a);
	CHECK_EQ(ioasid_get_capacity_avail(), avail - 40);
	/* A NULL-type set is never an MM token's. */
	struct ioasid_set *found = ioasid_find_mm_set(&mm_a);
	CHECK(found == a);
	ioasid_set_put(found);
	ioasid_set_put(n1);
	ioasid_set_put(n2);
	ioasid_set_put(n3);
	ioasid_set_put(a);
	CHECK_EQ(ioasid_get_capacity_avail(), avail);
	CHECK(ioasid_find_mm_set(&mm_a) == NULL);
	/* The token is free again once its set is gone. */
	a = ioasid_alloc_set(&mm_a, 1, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(a));
	ioasid_set_put(a);
}

static void test_null_everywhere(void)
{
	DECLARE_IOASID_SET(declared);

	ioasid_set_get(NULL);
	ioasid_set_put(NULL);
	CHECK(ioasid_find_mm_set(NULL) == NULL);
	CHECK(ioasid_find_mm_set(&mm_c) == NULL);
	CHECK_EQ(ioasid_adjust_set(NULL, 5), -EINVAL);
	/* Sets without a count or without a quota. */
	ioasid_t id = ioasid_alloc(&declared, 1, 100, NULL);
	CHECK(id != INVALID_IOASID);
	ioasid_set_get(&declared); /* no count: no-ops */
	ioasid_set_put(&declared);
	ioasid_set_put(&declared);
	CHECK(ioasid_find(&declared, id, NULL) == NULL);
	CHECK_EQ(ioasid_adjust_set(&declared, 5), -EINVAL);
	ioasid_set_destroy(&declared);
	CHECK_EQ(ioasid_adjust_set(&declared, 5), -EINVAL);
	CHECK_EQ(live(), 0);
}

static int count_ids(ioasid_t id, void *priv, void *data)
{
	(void)id;
	(void)priv;
	++*(int *)data;
	return 0;
}

static void test_every_set_function(void)
{
	struct ioasid_set *vm = ioasid_alloc_set(&mm_b, 3, IOASID_SET_TYPE_MM);
	struct ioasid_set *other = ioasid_alloc_set(NULL, 3, IOASID_SET_TYPE_NULL);
	int data = 7, more = 8;

	CHECK(!IS_ERR_OR_NULL(vm) && !IS_ERR_OR_NULL(other));
	ioasid_t a = ioasid_alloc(vm, 1, 0xFFFFF, &data);
	ioasid_t b = INVALID_IOASID;
	CHECK_EQ(ioasid_alloc_id(vm, 1, 0xFFFFF, NULL, &b), 0);
	ioasid_t c = ioasid_alloc(other, 1, 0xFFFFF, NULL);
	CHECK(a != INVALID_IOASID && b != INVALID_IOASID && c != INVALID_IOASID);
	CHECK(ioasid_find(vm, a, NULL) == &data);
	CHECK_EQ(PTR_ERR(ioasid_find(other, a, NULL)), -EACCES);
	CHECK_EQ(ioasid_set_attach_data(vm, a, &more), 0);
	CHECK(ioasid_find(NULL, a, NULL) == &more);
	CHECK_EQ(ioasid_set_attach_data(other, a, &data), -EACCES);
	int n = 0;
	CHECK_EQ(ioasid_set_for_each(vm, count_ids, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(ioasid_get_checked(vm, a), 0);
	CHECK_EQ(ioasid_get_checked(other, a), -EACCES);
	CHECK_EQ(ioasid_put_checked(vm, a), 0);
	CHECK_EQ(ioasid_set_free(other, a), -EACCES);
	/* The quota holds: 3 IDs, then EDQUOT. */
	ioasid_t d = ioasid_alloc(vm, 1, 0xFFFFF, NULL);
	CHECK(d != INVALID_IOASID);
	ioasid_t e;
	CHECK_EQ(ioasid_alloc_id(vm, 1, 0xFFFFF, NULL, &e), -EDQUOT);
	CHECK_EQ(ioasid_set_free(vm, d), 0);
	CHECK_EQ(ioasid_set_free(vm, d), -ENOENT);
	ioasid_free(b);
	CHECK_EQ(live(), 2);
	ioasid_set_put(vm);
	ioasid_set_put(other);
	CHECK_EQ(live(), 0);
}

static void test_adjust(void)
{
	ioasid_t avail = ioasid_get_capacity_avail();
	struct ioasid_set *vm = ioasid_alloc_set(&mm_b, 2, IOASID_SET_TYPE_MM);

	CHECK(!IS_ERR_OR_NULL(vm));
	CHECK_EQ(ioasid_get_capacity_avail(), avail - 2);
	ioasid_t a = ioasid_alloc(vm, 1, 100, NULL);
	ioasid_t b = ioasid_alloc(vm, 1, 100, NULL);
	CHECK(a != INVALID_IOASID && b != INVALID_IOASID);
	CHECK_EQ(ioasid_alloc(vm, 1, 100, NULL), INVALID_IOASID);
	CHECK_EQ(ioasid_adjust_set(vm, 0), -EINVAL);
	CHECK_EQ(ioasid_adjust_set(vm, 1), -EBUSY);
	/* Beyond the capacity left: -ENOSPC; exactly all of it: fine. */
	CHECK_EQ(ioasid_adjust_set(vm, 2 + (avail - 2) + 1), -ENOSPC);
	CHECK_EQ(ioasid_get_capacity_avail(), avail - 2);
	CHECK_EQ(ioasid_adjust_set(vm, avail), 0);
	CHECK_EQ(ioasid_get_capacity_avail(), 0);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(NULL, 1, IOASID_SET_TYPE_NULL)), -ENOSPC);
	ioasid_t c = ioasid_alloc(vm, 1, 100, NULL);
	CHECK(c != INVALID_IOASID);
	/* A cut gives back; the live count (3) is the floor. */
	CHECK_EQ(ioasid_adjust_set(vm, 2), -EBUSY);
	CHECK_EQ(ioasid_adjust_set(vm, 3), 0);
	CHECK_EQ(ioasid_get_capacity_avail(), avail - 3);
	CHECK_EQ(ioasid_alloc(vm, 1, 100, NULL), INVALID_IOASID);
	/* A FREE_PENDING ID still counts until released. */
	ioasid_get(c);
	ioasid_free(c);
	CHECK_EQ(ioasid_adjust_set(vm, 2), -EBUSY);
	CHECK(ioasid_put(c));
	CHECK_EQ(ioasid_adjust_set(vm, 2), 0);
	CHECK_EQ(ioasid_get_capacity_avail(), avail - 2);
	ioasid_set_put(vm);
	CHECK_EQ(ioasid_get_capacity_avail(), avail);
	CHECK_EQ(live(), 0);

	/* An ioasid_set_init set with a quota adjusts too (no capacity). */
	struct ioasid_set init = { { 0 } };
	CHECK_EQ(ioasid_set_init(&init, NULL, 1), 0);
	CHECK(ioasid_alloc(&init, 1, 100, NULL) != INVALID_IOASID);
	CHECK_EQ(ioasid_adjust_set(&init, 2), 0);
	CHECK(ioasid_alloc(&init, 1, 100, NULL) != INVALID_IOASID);
	CHECK_EQ(ioasid_adjust_set(&init, 1), -EBUSY);
	CHECK_EQ(ioasid_get_capacity_avail(), avail);
	ioasid_set_destroy(&init);
	/* ... and one without a quota does not. */
	CHECK_EQ(ioasid_set_init(&init, NULL, 0), 0);
	CHECK_EQ(ioasid_adjust_set(&init, 2), -EINVAL);
	ioasid_set_destroy(&init);
	CHECK_EQ(live(), 0);
}

static void test_references_and_teardown(void)
{
	ioasid_t avail = ioasid_get_capacity_avail();
	struct ioasid_set *vm = ioasid_alloc_set(&mm_c, 8, IOASID_SET_TYPE_MM);
	int data = 3;

	CHECK(!IS_ERR_OR_NULL(vm));
	ioasid_t kept = ioasid_alloc(vm, 1, 0xFFFFF, &data);
	ioasid_t gone = ioasid_alloc(vm, 1, 0xFFFFF, NULL);
	CHECK(kept != INVALID_IOASID && gone != INVALID_IOASID);
	/* References: get, find_mm_set; the set lives until the last put. */
	ioasid_set_get(vm);
	struct ioasid_set *found = ioasid_find_mm_set(&mm_c);
	CHECK(found == vm);
	ioasid_set_put(vm);
	ioasid_set_put(found);
	CHECK(ioasid_find(vm, kept, NULL) == &data);
	CHECK(ioasid_find_mm_set(&mm_c) == vm);
	ioasid_set_put(vm);
	/* One reference left: the last put tears down, while an ID is still
	 * referenced: it stays FREE_PENDING, found, detached from the set. */
	ioasid_get(kept);
	ioasid_set_put(vm);
	CHECK(ioasid_find_mm_set(&mm_c) == NULL);
	CHECK_EQ(PTR_ERR(ioasid_find(NULL, gone, NULL)), -ENOENT);
	CHECK(ioasid_find(NULL, kept, NULL) == &data);
	CHECK_EQ(ioasid_get_checked(NULL, kept), -ENOENT);
	CHECK_EQ(ioasid_get_capacity_avail(), avail);
	CHECK_EQ(live(), 1);
	/* The token has a new set at once; the pending ID is not its own. */
	vm = ioasid_alloc_set(&mm_c, 8, IOASID_SET_TYPE_MM);
	CHECK(!IS_ERR_OR_NULL(vm));
	CHECK_EQ(ioasid_put_checked(vm, kept), -EACCES);
	CHECK_EQ(ioasid_put_checked(NULL, kept), 1);
	CHECK_EQ(live(), 0);
	CHECK(ioasid_alloc(vm, kept, kept, NULL) == kept);
	ioasid_set_put(vm);
	CHECK_EQ(live(), 0);
}

/* A paravirtual allocator: IDs [5000, 5063]; counts frees. */
static int host_frees;
static ioasid_t host_last_freed;
static unsigned char host_used[64];

static ioasid_t host_alloc(ioasid_t min, ioasid_t max, void *pdata)
{
	(void)pdata;
	for (ioasid_t i = 0; i < 64; i++) {
		if (5000 + i >= min && 5000 + i <= max && !host_used[i]) {
			host_used[i] = 1;
			return 5000 + i;
		}
	}
	return INVALID_IOASID;
}

static void host_free(ioasid_t id, void *pdata)
{
	(void)pdata;
	host_frees++;
	host_last_freed = id;
	host_used[id - 5000] = 0;
}

static void test_teardown_runs_custom_hooks(void)
{
	struct ioasid_allocator_ops ops = { .alloc = host_alloc, .free = host_free };

	CHECK_EQ(live(), 0);
	CHECK_EQ(ioasid_register_allocator(&ops), 0);
	struct ioasid_set *vm = ioasid_alloc_set(NULL, 4, IOASID_SET_TYPE_NULL);
	CHECK(!IS_ERR_OR_NULL(vm));
	ioasid_t a = ioasid_alloc(vm, 1, 0xFFFFF, NULL);
	ioasid_t b = ioasid_alloc(vm, 1, 0xFFFFF, NULL);
	CHECK_EQ(a, 5000);
	CHECK_EQ(b, 5001);
	ioasid_get(b);
	ioasid_set_put(vm);
	CHECK_EQ(host_frees, 1);
	CHECK_EQ(host_last_freed, 5000);
	/* The referenced one goes back to the allocator at its last put. */
	CHECK(ioasid_put(b));
	CHECK_EQ(host_frees, 2);
	CHECK_EQ(host_last_freed, 5001);
	CHECK_EQ(live(), 0);
	ioasid_unregister_allocator(&ops);
}

static void test_install_capacity(void)
{
	CHECK_EQ(ioasid_get_capacity(), 0xFFFFF);
	CHECK_EQ(ioasid_get_capacity_avail(), 0xFFFFF);
	struct ioasid_set *vm = ioasid_alloc_set(NULL, 1, IOASID_SET_TYPE_NULL);
	CHECK(!IS_ERR_OR_NULL(vm));
	/* Quota reserved: -EBUSY, nothing changed. */
	CHECK_EQ(ioasid_install_capacity(100), -EBUSY);
	CHECK_EQ(ioasid_get_capacity(), 0xFFFFF);
	CHECK_EQ(ioasid_get_capacity_avail(), 0xFFFFE);
	ioasid_set_put(vm);
	CHECK_EQ(ioasid_install_capacity(100), 0);
	CHECK_EQ(ioasid_get_capacity(), 100);
	CHECK_EQ(ioasid_get_capacity_avail(), 100);
	/* Once only. */
	CHECK_EQ(ioasid_install_capacity(200), -EBUSY);
	CHECK_EQ(ioasid_get_capacity(), 100);
	/* Quotas add up to the capacity, not beyond. */
	struct ioasid_set *x = ioasid_alloc_set(NULL, 60, IOASID_SET_TYPE_NULL);
	CHECK_EQ(PTR_ERR(ioasid_alloc_set(NULL, 41, IOASID_SET_TYPE_NULL)), -ENOSPC);
	struct ioasid_set *y = ioasid_alloc_set(NULL, 40, IOASID_SET_TYPE_NULL);
	CHECK(!IS_ERR_OR_NULL(x) && !IS_ERR_OR_NULL(y));
	CHECK_EQ(ioasid_get_capacity_avail(), 0);
	CHECK_EQ(ioasid_adjust_set(y, 41), -ENOSPC);
	ioasid_set_put(x);
	CHECK_EQ(ioasid_adjust_set(y, 100), 0);
	CHECK_EQ(ioasid_get_capacity_avail(), 0);
	ioasid_set_put(y);
	CHECK_EQ(ioasid_get_capacity_avail(), 100);
}

/* Many threads create, find and put the MM set of one token at once: at
 * most one set of the token exists at any time. */
#define RACERS 8
#define ROUNDS 2000
static atomic_int owners;

static void *mm_racer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		struct ioasid_set *s = ioasid_alloc_set(&mm_race, 1, IOASID_SET_TYPE_MM);
		if (IS_ERR(s)) {
			CHECK_EQ(PTR_ERR(s), -EEXIST);
			struct ioasid_set *f = ioasid_find_mm_set(&mm_race);
			if (f) {
				ioasid_t id = ioasid_alloc(f, 1, 0xFFFFF, NULL);
				if (id != INVALID_IOASID)
					ioasid_free(id);
				ioasid_set_put(f);
			}
			continue;
		}
		CHECK_EQ(atomic_fetch_add(&owners, 1), 0);
		CHECK(ioasid_find_mm_set(&mm_race) == s);
		ioasid_set_put(s);
		CHECK_EQ(atomic_fetch_sub(&owners, 1), 1);
		ioasid_set_put(s); /* last put by its creator (or a finder) */
	}
	return NULL;
}

static void test_mm_token_race(void)
{
	pthread_t threads[RACERS];
	ioasid_t avail = ioasid_get_capacity_avail();

	for (int i = 0; i < RACERS; i++)
		CHECK_EQ(pthread_create(&threads[i], NULL, mm_racer, NULL), 0);
	for (int i = 0; i < RACERS; i++)
		pthread_join(threads[i], NULL);
	CHECK(ioasid_find_mm_set(&mm_race) == NULL);
	CHECK_EQ(ioasid_get_capacity_avail(), avail);
	CHECK_EQ(live(), 0);
}

int main(void)
{
	/* First: the capacity is still the default and unreserved. */
	test_install_capacity();
	test_alloc_set_errors();
	test_null_everywhere();
	test_every_set_function();
	test_adjust();
	test_references_and_teardown();
	test_teardown_runs_custom_hooks();
	test_mm_token_race();
	return check_report("sets");
}
