/* The kernel v5.5 functions on the global space: ioasid_alloc, ioasid_free,
 * ioasid_find, ioasid_set_data, read-side sections, the ERR_PTR helpers,
 * and every bad input (an error, and no change in the live count). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "ioasid.h"
#include "check.h"

static long live(void)
{
	return ioasid_space_live_count(NULL);
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

static int getter_calls;
static void *getter_seen;

static bool getter_yes(void *data)
{
	getter_calls++;
	getter_seen = data;
	return true;
}

static bool getter_no(void *data)
{
	getter_calls++;
	getter_seen = data;
	return false;
}

/* Static storage, never initialised: must work as it is. */
static DECLARE_IOASID_SET(static_set);

static void test_lowest_free_and_edges(void)
{
	DECLARE_IOASID_SET(local_set);
	int a = 1, b = 2, c = 3;

	CHECK_EQ(live(), 0);
	/* Inclusive lower bound at 0, lowest-free order. */
	CHECK_EQ(ioasid_alloc(&static_set, 0, 10, &a), 0);
	CHECK_EQ(ioasid_alloc(&static_set, 0, 10, &b), 1);
	CHECK_EQ(ioasid_alloc(&local_set, 0, 10, &c), 2);
	CHECK_EQ(live(), 3);
	/* Sets share the numbers: a freed ID is the lowest free again. */
	ioasid_free(1);
	CHECK_EQ(ioasid_alloc(&local_set, 0, 10, &c), 1);
	CHECK_EQ(ioasid_alloc(&local_set, 5, 10, &c), 5);
	CHECK_EQ(ioasid_alloc(&local_set, 0, 10, &c), 3);

	/* The 20-bit PASID edge, inclusive. */
	CHECK_EQ(ioasid_alloc(&static_set, 0xFFFFF, 0xFFFFF, &a), 0xFFFFF);
	CHECK_EQ(ioasid_alloc(&static_set, 0xFFFFE, 0xFFFFF, &a), 0xFFFFE);
	CHECK(ioasid_find(NULL, 0xFFFFF, NULL) == &a);

	/* The top of the space, 0xFFFFFFFE, inclusive; INVALID_IOASID never. */
	CHECK_EQ(ioasid_alloc(&static_set, 0xFFFFFFFE, 0xFFFFFFFE, &b), 0xFFFFFFFE);
	CHECK_EQ(ioasid_alloc(&static_set, 0xFFFFFFF0, INVALID_IOASID, &b), 0xFFFFFFF0);
	CHECK(ioasid_find(&static_set, 0xFFFFFFFE, NULL) == &b);
	CHECK(PTR_ERR(ioasid_find(NULL, INVALID_IOASID, NULL)) == -ENOENT);

	long before = live();
	/* Full range: no ID, nothing changed. */
	CHECK_EQ(ioasid_alloc(&static_set, 0xFFFFF, 0xFFFFF, &a), INVALID_IOASID);
	CHECK_EQ(ioasid_alloc(&static_set, 0xFFFFFFFE, INVALID_IOASID, &a), INVALID_IOASID);
	/* Out of the space entirely. */
	CHECK_EQ(ioasid_alloc(&static_set, INVALID_IOASID, INVALID_IOASID, &a), INVALID_IOASID);
	/* Reversed range. */
	CHECK_EQ(ioasid_alloc(&static_set, 10, 5, &a), INVALID_IOASID);
	CHECK_EQ(ioasid_alloc(NULL, 10, 5, &a), INVALID_IOASID);
	CHECK_EQ(live(), before);

	/* Exact ranges fill up: the fifth of four fails (ENOSPC). */
	for (ioasid_t id = 100; id <= 103; id++)
		CHECK_EQ(ioasid_alloc(&local_set, 100, 103, NULL), id);
	before = live();
	CHECK_EQ(ioasid_alloc(&local_set, 100, 103, NULL), INVALID_IOASID);
	CHECK_EQ(live(), before);

	ioasid_set_destroy(&local_set);
	ioasid_set_destroy(&static_set);
	CHECK_EQ(live(), 0);
}

static void test_find(void)
{
	DECLARE_IOASID_SET(mine);
	DECLARE_IOASID_SET(other);
	DECLARE_IOASID_SET(unused);
	int x = 7, y = 8;

	ioasid_t id = ioasid_alloc(&mine, 0, 100, &x);
	ioasid_t foreign = ioasid_alloc(&other, 0, 100, &y);
	ioasid_t null_data = ioasid_alloc(&mine, 0, 100, NULL);
	CHECK(id != INVALID_IOASID && foreign != INVALID_IOASID && null_data != INVALID_IOASID);

	CHECK(ioasid_find(&mine, id, NULL) == &x);
	CHECK(ioasid_find(NULL, id, NULL) == &x);
	CHECK(ioasid_find(NULL, foreign, NULL) == &y);

	/* Another set's ID: ERR_PTR(-EACCES); a dead one: ERR_PTR(-ENOENT). */
	void *p = ioasid_find(&mine, foreign, NULL);
	CHECK(IS_ERR(p) && PTR_ERR(p) == -EACCES);
	p = ioasid_find(&mine, 99999, NULL);
	CHECK(IS_ERR(p) && PTR_ERR(p) == -ENOENT);
	p = ioasid_find(NULL, 99999, NULL);
	CHECK(IS_ERR(p) && PTR_ERR(p) == -ENOENT);

	/* A set that never allocated owns nothing. */
	p = ioasid_find(&unused, id, NULL);
	CHECK(IS_ERR(p) && PTR_ERR(p) == -EACCES);
	p = ioasid_find(&unused, 99999, NULL);
	CHECK(IS_ERR(p) && PTR_ERR(p) == -ENOENT);

	/* The getter sees the data; false gives NULL, true the data. */
	getter_calls = 0;
	CHECK(ioasid_find(&mine, id, getter_no) == NULL);
	CHECK(getter_calls == 1 && getter_seen == &x);
	CHECK(ioasid_find(&mine, id, getter_yes) == &x);
	CHECK(getter_calls == 2);
	/* No getter call on an error. */
	p = ioasid_find(&mine, foreign, getter_yes);
	CHECK(PTR_ERR(p) == -EACCES && getter_calls == 2);

	/* NULL private data round-trips as NULL, not as an error. */
	p = ioasid_find(&mine, null_data, NULL);
	CHECK(p == NULL && !IS_ERR(p) && IS_ERR_OR_NULL(p));
	CHECK(ioasid_find(NULL, null_data, NULL) == NULL);

	/* A NULL set allocates in the anonymous set. */
	ioasid_t anon = ioasid_alloc(NULL, 0, 100, &y);
	CHECK(anon != INVALID_IOASID);
	CHECK(ioasid_find(NULL, anon, NULL) == &y);
	CHECK(PTR_ERR(ioasid_find(&mine, anon, NULL)) == -EACCES);
	ioasid_free(anon);
	CHECK(PTR_ERR(ioasid_find(NULL, anon, NULL)) == -ENOENT);

	ioasid_set_destroy(&mine);
	ioasid_set_destroy(&other);
	ioasid_set_destroy(&unused);
	CHECK_EQ(live(), 0);
}

static void test_free(void)
{
	DECLARE_IOASID_SET(a);
	DECLARE_IOASID_SET(b);
	ioasid_t x = ioasid_alloc(&a, 0, 100, NULL);
	ioasid_t y = ioasid_alloc(&b, 0, 100, NULL);
	CHECK_EQ(live(), 2);

	/* Unknown IDs are a silent no-op. */
	ioasid_free(5000);
	ioasid_free(INVALID_IOASID);
	ioasid_free(0xFFFFFFFE);
	CHECK_EQ(live(), 2);

	/* The kernel form frees whichever set owns it; reusable at once. */
	ioasid_free(y);
	CHECK_EQ(live(), 1);
	CHECK(PTR_ERR(ioasid_find(&b, y, NULL)) == -ENOENT);
	/* Double free: no-op. */
	ioasid_free(y);
	CHECK_EQ(live(), 1);
	CHECK_EQ(ioasid_alloc(&a, 0, 100, NULL), y);
	ioasid_free(x);
	ioasid_free(y);
	CHECK_EQ(live(), 0);
	ioasid_set_destroy(&a);
	ioasid_set_destroy(&b);
}

/* A reader that holds ioasid_read_lock while set_data runs. */
struct reader {
	ioasid_t id;
	void *seen;
	atomic_int inside;  /* 1 once the reader holds its section */
	atomic_int left;    /* 1 just before it leaves the section */
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	ioasid_read_lock();
	r->seen = ioasid_find(NULL, r->id, NULL);
	atomic_store(&r->inside, 1);
	sleep_ms(200);
	atomic_store(&r->left, 1);
	ioasid_read_unlock();
	return NULL;
}

static void test_set_data(void)
{
	DECLARE_IOASID_SET(s);
	int old_data = 1, new_data = 2, third = 3;
	ioasid_t id = ioasid_alloc(&s, 0, 100, &old_data);

	CHECK_EQ(ioasid_set_data(id, &new_data), 0);
	CHECK(ioasid_find(&s, id, NULL) == &new_data);
	/* Unknown ID: -ENOENT, nothing changed. */
	long before = live();
	CHECK_EQ(ioasid_set_data(4242, &new_data), -ENOENT);
	CHECK_EQ(ioasid_set_data(INVALID_IOASID, &new_data), -ENOENT);
	CHECK_EQ(live(), before);
	/* NULL data is allowed. */
	CHECK_EQ(ioasid_set_data(id, NULL), 0);
	CHECK(ioasid_find(&s, id, NULL) == NULL);
	CHECK_EQ(ioasid_set_data(id, &old_data), 0);

	/* set_data returns only after the reader that may see the old pointer
	 * has left its section. */
	struct reader r = { .id = id };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader_main, &r) == 0);
	while (!atomic_load(&r.inside))
		sleep_ms(1);
	CHECK_EQ(ioasid_set_data(id, &new_data), 0);
	CHECK(atomic_load(&r.left) == 1);
	pthread_join(t, NULL);
	CHECK(r.seen == &old_data);
	CHECK(ioasid_find(NULL, id, NULL) == &new_data);

	/* Inside this thread's own section it would wait for itself:
	 * -EDEADLK and nothing changed. */
	ioasid_read_lock();
	CHECK_EQ(ioasid_set_data(id, &third), -EDEADLK);
	CHECK(ioasid_find(NULL, id, NULL) == &new_data);
	ioasid_read_unlock();
	CHECK_EQ(ioasid_set_data(id, &third), 0);

	ioasid_set_destroy(&s);
	CHECK_EQ(live(), 0);
}

/* A getter runs inside the library's read-side section: waiting for
 * readers from there would wait for itself, so set_data refuses. */
static int nested_set_data_rc;
static bool getter_sets_data(void *data)
{
	nested_set_data_rc = ioasid_set_data(0, data);
	return true;
}

static void test_set_data_inside_getter(void)
{
	DECLARE_IOASID_SET(s);
	int v = 1;
	CHECK_EQ(ioasid_alloc(&s, 0, 0, &v), 0);
	CHECK(ioasid_find(&s, 0, getter_sets_data) == &v);
	CHECK_EQ(nested_set_data_rc, -EDEADLK);
	ioasid_set_destroy(&s);
}

static void test_read_lock_nesting(void)
{
	DECLARE_IOASID_SET(s);
	int v = 1;
	ioasid_t id = ioasid_alloc(&s, 0, 10, &v);

	ioasid_read_lock();
	ioasid_read_lock();
	CHECK(ioasid_find(&s, id, NULL) == &v);
	ioasid_read_unlock();
	/* Still inside the outer section. */
	CHECK_EQ(ioasid_set_data(id, &v), -EDEADLK);
	ioasid_read_unlock();
	CHECK_EQ(ioasid_set_data(id, &v), 0);
	/* An unlock without a lock is ignored. */
	ioasid_read_unlock();
	CHECK_EQ(ioasid_set_data(id, &v), 0);
	ioasid_synchronize();
	ioasid_set_destroy(&s);
}

static void test_err_ptr_helpers(void)
{
	CHECK(IS_ERR(ERR_PTR(-ENOENT)) && PTR_ERR(ERR_PTR(-ENOENT)) == -ENOENT);
	CHECK(IS_ERR(ERR_PTR(-4095)) && !IS_ERR(ERR_PTR(-4096)));
	CHECK(!IS_ERR(NULL) && IS_ERR_OR_NULL(NULL));
	int x;
	CHECK(!IS_ERR(&x) && !IS_ERR_OR_NULL(&x));
	CHECK(IOMMU_PASID_MIN == 1 && IOMMU_PASID_MAX == 0xFFFFF);
	CHECK(INVALID_IOASID == 0xFFFFFFFFu);
}

/* One use of a set declared in automatic storage: it goes out of scope
 * with no live ID, as kernel code's sets do; returns 0 when all went well. */
static int use_a_declared_set_once(ioasid_t *out)
{
	DECLARE_IOASID_SET(scoped);
	int token;
	ioasid_t id = ioasid_alloc(&scoped, 1, 0xFFFFF, &token);
	if (id == INVALID_IOASID)
		return 1;
	*out = id;
	if (ioasid_find(&scoped, id, NULL) != &token)
		return 2;
	if (ioasid_set_free(&scoped, id) != 0)
		return 3;
	return 0;
}

/* Declared sets need no teardown, so their library state must not outlive
 * them: more uses than the space has sets (32767) all work, and nothing is
 * lost (valgrind, LeakSanitizer). */
static void test_declared_sets_need_no_teardown(void)
{
	long failures = 0;
	ioasid_t id = 0;
	for (int i = 0; i < 40000; i++)
		failures += use_a_declared_set_once(&id) != 0;
	CHECK_EQ(failures, 0);
	CHECK_EQ(id, 1);
	CHECK_EQ(live(), 0);
	/* A set whose state was reclaimed while it was empty and still in
	 * scope works as a fresh one. */
	DECLARE_IOASID_SET(kept);
	int token;
	ioasid_t first = ioasid_alloc(&kept, 1, 0xFFFFF, &token);
	CHECK_EQ(first, 1);
	ioasid_free(first);
	for (int i = 0; i < 1000; i++)
		failures += use_a_declared_set_once(&id) != 0;
	CHECK_EQ(failures, 0);
	CHECK(PTR_ERR(ioasid_find(&kept, 1, NULL)) == -ENOENT);
	/* Its stale state may serve another declared set by now: neither a
	 * lookup by SPID nor a checked free through `kept` reaches that set's
	 * IDs (both take no guard on a declared set). */
	DECLARE_IOASID_SET(other);
	ioasid_t mine = ioasid_alloc(&other, 1, 0xFFFFF, &token);
	CHECK_EQ(mine, 1);
	CHECK_EQ(ioasid_attach_spid(mine, 77), 0);
	CHECK_EQ(ioasid_find_by_spid(&other, 77, false), mine);
	CHECK_EQ(ioasid_find_by_spid(&kept, 77, false), INVALID_IOASID);
	CHECK_EQ(ioasid_find_by_spid(&kept, 77, true), INVALID_IOASID);
	CHECK_EQ(ioasid_set_free(&kept, mine), -EACCES);
	CHECK(ioasid_find(&other, mine, NULL) == &token);
	CHECK_EQ(ioasid_set_free(&other, mine), 0);
	CHECK_EQ(ioasid_find_by_spid(&other, 77, false), INVALID_IOASID);
	ioasid_t again = ioasid_alloc(&kept, 1, 0xFFFFF, &token);
	CHECK_EQ(again, 1);
	CHECK(ioasid_find(&kept, again, NULL) == &token);
	CHECK_EQ(ioasid_set_free(&kept, again), 0);
	CHECK_EQ(live(), 0);
}

int main(void)
{
	test_lowest_free_and_edges();
	test_find();
	test_free();
	test_set_data();
	test_set_data_inside_getter();
	test_read_lock_nesting();
	test_err_ptr_helpers();
	test_declared_sets_need_no_teardown();
	CHECK_EQ(live(), 0);
	return check_report("kernel");
}
