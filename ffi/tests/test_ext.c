/* Our extensions: spaces and policies, set init/destroy/free/for_each,
 * quotas, destroyed spaces, read-side sections and synchronize, and every
 * bad input (an error, and no change in the live counts). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ioasid.h"
#include "check.h"

static long live(const struct ioasid_space *space)
{
	return ioasid_space_live_count(space);
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

static void test_space_create(void)
{
	CHECK(ioasid_space_create(0, 10, 3) == NULL);
	CHECK(ioasid_space_create(0, 10, 0xFFFFFFFFu) == NULL);
	CHECK(ioasid_space_create(0, 10, IOASID_POLICY_CYCLIC | (IOASID_SPACE_KEEP_MEMORY << 1)) == NULL);
	struct ioasid_space *kept =
		ioasid_space_create(0, 10, IOASID_POLICY_CYCLIC | IOASID_SPACE_KEEP_MEMORY);
	CHECK(kept != NULL && live(kept) == 0);
	ioasid_space_destroy(kept);
	CHECK(ioasid_space_create(10, 9, IOASID_POLICY_LOWEST) == NULL);
	CHECK(ioasid_space_create(0, INVALID_IOASID, IOASID_POLICY_LOWEST) == NULL);
	struct ioasid_space *s = ioasid_space_create(0, 0xFFFFFFFE, IOASID_POLICY_ANY);
	CHECK(s != NULL && live(s) == 0);
	ioasid_space_destroy(s);
	/* Destroyed, never made, NULL: ignored or refused. */
	ioasid_space_destroy(s);
	ioasid_space_destroy(NULL);
	CHECK_EQ(live(s), -EINVAL);
	int not_a_space;
	CHECK_EQ(live((struct ioasid_space *)&not_a_space), -EINVAL);
}

static void test_lowest_space_and_full(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 63, IOASID_POLICY_LOWEST);
	DECLARE_IOASID_SET(s);
	int data = 9;

	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	for (ioasid_t want = 0; want < 64; want++)
		CHECK_EQ(ioasid_alloc(&s, 0, 1000, &data), want);
	CHECK_EQ(live(sp), 64);
	/* Full (ENOSPC): nothing changed; the global space never saw a thing. */
	CHECK_EQ(ioasid_alloc(&s, 0, 1000, &data), INVALID_IOASID);
	CHECK_EQ(ioasid_alloc(&s, 64, 1000, &data), INVALID_IOASID);
	CHECK_EQ(live(sp), 64);
	CHECK_EQ(live(NULL), 0);
	/* find acts on the set's space; the NULL set means the global one. */
	CHECK(ioasid_find(&s, 5, NULL) == &data);
	CHECK(PTR_ERR(ioasid_find(NULL, 5, NULL)) == -ENOENT);

	CHECK_EQ(ioasid_set_free(&s, 17), 0);
	CHECK_EQ(ioasid_alloc(&s, 0, 1000, NULL), 17);
	ioasid_set_destroy(&s);
	CHECK_EQ(live(sp), 0);
	ioasid_space_destroy(sp);
}

static void test_cyclic_and_any(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 7, IOASID_POLICY_CYCLIC);
	DECLARE_IOASID_SET(s);
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), 0);
	CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), 1);
	CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), 2);
	/* A freed ID is not reused at once. */
	CHECK_EQ(ioasid_set_free(&s, 1), 0);
	CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), 3);
	for (ioasid_t want = 4; want <= 7; want++)
		CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), want);
	/* Wraps to the lowest free. */
	CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), 1);
	CHECK_EQ(ioasid_alloc(&s, 0, 7, NULL), INVALID_IOASID);
	ioasid_set_destroy(&s);
	ioasid_space_destroy(sp);

	sp = ioasid_space_create(1000, 1999, IOASID_POLICY_ANY);
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	unsigned char seen[1000] = { 0 };
	int ok = 1;
	for (int i = 0; i < 1000; i++) {
		ioasid_t id = ioasid_alloc(&s, 0, INVALID_IOASID, NULL);
		if (id < 1000 || id > 1999 || seen[id - 1000])
			ok = 0;
		else
			seen[id - 1000] = 1;
	}
	CHECK(ok);
	CHECK_EQ(live(sp), 1000);
	CHECK_EQ(ioasid_alloc(&s, 0, INVALID_IOASID, NULL), INVALID_IOASID);
	ioasid_set_destroy(&s);
	CHECK_EQ(live(sp), 0);
	ioasid_space_destroy(sp);
}

static void test_set_init_and_quota(void)
{
	DECLARE_IOASID_SET(q);
	DECLARE_IOASID_SET(used);
	int bogus;

	CHECK_EQ(ioasid_set_init(NULL, NULL, 0), -EINVAL);
	CHECK_EQ(ioasid_set_init(&q, (struct ioasid_space *)&bogus, 0), -EINVAL);
	/* A quota of 2 in the global space. */
	CHECK_EQ(ioasid_set_init(&q, NULL, 2), 0);
	CHECK_EQ(ioasid_set_init(&q, NULL, 2), -EEXIST);
	CHECK(ioasid_alloc(&q, 0, 100, NULL) != INVALID_IOASID);
	CHECK(ioasid_alloc(&q, 0, 100, NULL) != INVALID_IOASID);
	CHECK_EQ(live(NULL), 2);
	CHECK_EQ(ioasid_alloc(&q, 0, 100, NULL), INVALID_IOASID);
	CHECK_EQ(live(NULL), 2);
	/* A free makes room again. */
	CHECK_EQ(ioasid_set_free(&q, 0), 0);
	CHECK_EQ(ioasid_alloc(&q, 0, 100, NULL), 0);
	/* A declared set already in use cannot be re-initialised. */
	CHECK(ioasid_alloc(&used, 0, 100, NULL) != INVALID_IOASID);
	CHECK_EQ(ioasid_set_init(&used, NULL, 1), -EEXIST);
	CHECK_EQ(live(NULL), 3);
	ioasid_set_destroy(&q);
	ioasid_set_destroy(&used);
	CHECK_EQ(live(NULL), 0);
}

static void test_set_free(void)
{
	DECLARE_IOASID_SET(a);
	DECLARE_IOASID_SET(b);
	DECLARE_IOASID_SET(never);
	ioasid_t x = ioasid_alloc(&a, 0, 100, NULL);
	ioasid_t y = ioasid_alloc(&b, 0, 100, NULL);

	long before = live(NULL);
	CHECK_EQ(ioasid_set_free(NULL, x), -EINVAL);
	CHECK_EQ(ioasid_set_free(&a, y), -EACCES);
	CHECK_EQ(ioasid_set_free(&a, 555), -ENOENT);
	CHECK_EQ(ioasid_set_free(&a, INVALID_IOASID), -ENOENT);
	CHECK_EQ(ioasid_set_free(&never, x), -EACCES);
	CHECK_EQ(ioasid_set_free(&never, 555), -ENOENT);
	CHECK_EQ(live(NULL), before);
	CHECK(PTR_ERR(ioasid_find(&b, y, NULL)) != -ENOENT);

	CHECK_EQ(ioasid_set_free(&a, x), 0);
	CHECK_EQ(ioasid_set_free(&a, x), -ENOENT);
	CHECK_EQ(live(NULL), before - 1);
	ioasid_set_destroy(&a);
	ioasid_set_destroy(&b);
	ioasid_set_destroy(&never);
	CHECK_EQ(live(NULL), 0);
}

struct walk {
	ioasid_t ids[64];
	void *data[64];
	int n;
	ioasid_t stop_at;
	struct ioasid_set *set;  /* for the callback that allocates and frees */
};

static int record(ioasid_t id, void *private_data, void *arg)
{
	struct walk *w = arg;
	if (w->n < 64) {
		w->ids[w->n] = id;
		w->data[w->n] = private_data;
	}
	w->n++;
	return id == w->stop_at ? -77 : 0;
}

/* Allocates and frees in the walked set: no deadlock. */
static int churn(ioasid_t id, void *private_data, void *arg)
{
	struct walk *w = arg;
	w->n++;
	ioasid_t extra = ioasid_alloc(w->set, 1000, 2000, NULL);
	if (extra == INVALID_IOASID)
		return 1;
	int rc = ioasid_find(w->set, id, NULL) == private_data ? 0 : 2;
	if (ioasid_set_free(w->set, extra) != 0)
		rc = 3;
	return rc;
}

static int set_data_rc;
static int set_data_in_walk(ioasid_t id, void *private_data, void *arg)
{
	(void)arg;
	set_data_rc = ioasid_set_data(id, private_data);
	return 0;
}

static void test_for_each(void)
{
	DECLARE_IOASID_SET(s);
	DECLARE_IOASID_SET(other);
	DECLARE_IOASID_SET(never);
	int d[5];

	/* Interleave with another set: only this set's IDs are visited. */
	for (int i = 0; i < 5; i++) {
		CHECK(ioasid_alloc(&s, 0, 100, &d[i]) != INVALID_IOASID);
		CHECK(ioasid_alloc(&other, 0, 100, NULL) != INVALID_IOASID);
	}
	struct walk w = { .stop_at = INVALID_IOASID };
	CHECK_EQ(ioasid_set_for_each(&s, record, &w), 0);
	CHECK_EQ(w.n, 5);
	int ok = 1;
	for (int i = 0; i < 5 && i < w.n; i++)
		ok &= w.ids[i] == (ioasid_t)(2 * i) && w.data[i] == &d[i];
	CHECK(ok);
	/* Early stop: the callback's value. */
	struct walk stop = { .stop_at = 4 };
	CHECK_EQ(ioasid_set_for_each(&s, record, &stop), -77);
	CHECK_EQ(stop.n, 3);
	/* Bad input and an unused set. */
	CHECK_EQ(ioasid_set_for_each(NULL, record, &w), -EINVAL);
	CHECK_EQ(ioasid_set_for_each(&s, NULL, &w), -EINVAL);
	struct walk empty = { .stop_at = INVALID_IOASID };
	CHECK_EQ(ioasid_set_for_each(&never, record, &empty), 0);
	CHECK_EQ(empty.n, 0);
	/* The callback may alloc, find and free in the same set. */
	struct walk c = { .set = &s };
	CHECK_EQ(ioasid_set_for_each(&s, churn, &c), 0);
	CHECK(c.n >= 5);
	CHECK_EQ(live(NULL), 10);
	/* The walk is a read-side section: set_data (which waits for readers)
	 * refuses with -EDEADLK instead of waiting for itself. */
	CHECK_EQ(ioasid_set_for_each(&s, set_data_in_walk, NULL), 0);
	CHECK_EQ(set_data_rc, -EDEADLK);
	CHECK(ioasid_find(&s, 0, NULL) == &d[0]);
	ioasid_set_destroy(&s);
	ioasid_set_destroy(&other);
	CHECK_EQ(live(NULL), 0);
}

static void test_set_destroy(void)
{
	DECLARE_IOASID_SET(s);
	struct ioasid_space *sp = ioasid_space_create(0, 99, IOASID_POLICY_LOWEST);
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	for (int i = 0; i < 10; i++)
		CHECK(ioasid_alloc(&s, 0, 99, NULL) != INVALID_IOASID);
	CHECK_EQ(live(sp), 10);
	ioasid_set_destroy(&s);
	CHECK_EQ(live(sp), 0);
	ioasid_set_destroy(&s);
	ioasid_set_destroy(NULL);
	/* Back to the declared state: the next use is in the global space. */
	CHECK_EQ(ioasid_alloc(&s, 0, 99, NULL), 0);
	CHECK_EQ(live(NULL), 1);
	CHECK_EQ(live(sp), 0);
	ioasid_set_destroy(&s);
	/* ...or it can be initialised again. */
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	ioasid_set_destroy(&s);
	ioasid_space_destroy(sp);
	CHECK_EQ(live(NULL), 0);
}

static void test_destroyed_space(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 99, IOASID_POLICY_LOWEST);
	DECLARE_IOASID_SET(s);
	DECLARE_IOASID_SET(late);
	int data = 3;
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	ioasid_t id = ioasid_alloc(&s, 0, 99, &data);
	CHECK_EQ(id, 0);

	ioasid_space_destroy(sp);
	/* Its sets allocate no more; what they hold stays readable. */
	CHECK_EQ(ioasid_alloc(&s, 0, 99, NULL), INVALID_IOASID);
	CHECK(ioasid_find(&s, id, NULL) == &data);
	CHECK_EQ(ioasid_set_init(&late, sp, 0), -EINVAL);
	CHECK_EQ(live(sp), -EINVAL);
	struct walk w = { .stop_at = INVALID_IOASID };
	CHECK_EQ(ioasid_set_for_each(&s, record, &w), 0);
	CHECK_EQ(w.n, 1);
	CHECK_EQ(ioasid_set_free(&s, id), 0);
	CHECK_EQ(ioasid_set_free(&s, id), -ENOENT);
	ioasid_set_destroy(&s);
	CHECK_EQ(live(NULL), 0);
}

/* ---- read-side sections and synchronize ---- */

struct reader {
	atomic_int inside, left;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	ioasid_read_lock();
	ioasid_read_lock();
	atomic_store(&r->inside, 1);
	sleep_ms(100);
	ioasid_read_unlock();
	sleep_ms(100);
	atomic_store(&r->left, 1);
	ioasid_read_unlock();
	return NULL;
}

static void test_synchronize(void)
{
	ioasid_synchronize();
	struct reader r = { 0 };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader_main, &r) == 0);
	while (!atomic_load(&r.inside))
		sleep_ms(1);
	/* Waits for the reader's outer section, not just the inner one. */
	ioasid_synchronize();
	CHECK_EQ(atomic_load(&r.left), 1);
	pthread_join(t, NULL);
}

/* Runs `body` in a child process; true if it died of SIGABRT. */
static int aborts(void (*body)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		body();
		_exit(0);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 0;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void synchronize_inside_read_lock(void)
{
	ioasid_read_lock();
	ioasid_synchronize();
}

static void exit_inside_read_lock(void)
{
	static const struct iommu_ops none = { 0 };
	struct bus_type bus = { "pci", &none };
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	ioasid_read_lock();
	iommu_pasid_exit(p);
}

static void test_waiting_inside_a_section_aborts(void)
{
	/* It would wait for itself forever: abort with a message instead. */
	CHECK(aborts(synchronize_inside_read_lock));
	CHECK(aborts(exit_inside_read_lock));
}

int main(void)
{
	test_space_create();
	test_lowest_space_and_full();
	test_cyclic_and_any();
	test_set_init_and_quota();
	test_set_free();
	test_for_each();
	test_set_destroy();
	test_destroyed_space();
	test_synchronize();
	if (!getenv("IOASID_TEST_NO_FORK"))
		test_waiting_inside_a_section_aborts();
	CHECK_EQ(live(NULL), 0);
	return check_report("ext");
}
