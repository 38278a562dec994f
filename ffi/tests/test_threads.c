/* 8 threads, each with its own set, alloc/find/free with data tagged by
 * thread and ID. No ID is ever held by two threads at once (checked with
 * an owner table updated by compare-and-swap), finds return the thread's
 * own tagged data, other threads' IDs are never this set's, and at the end
 * each set's for_each sees exactly the IDs its thread holds: none lost.
 * The iteration count is argv[1] (default 20000 per thread). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "ioasid.h"
#include "check.h"

#define THREADS 8
#define HELD 64
#define RANGE_MIN 1u
#define RANGE_MAX 0xFFFFFu

/* owner[id] = thread + 1 while that thread holds id, else 0. */
static atomic_int owner[RANGE_MAX + 1];

struct tag {
	int thread;
	ioasid_t id;
};

struct worker {
	int index;
	long iterations;
	struct ioasid_set *set;  /* odd threads: an explicitly initialised set */
	long allocs, frees, collisions, bad_finds, foreign_hits;
	int lost, held;
};

static int count_ids(ioasid_t id, void *data, void *arg)
{
	struct worker *w = arg;
	struct tag *t = data;
	if (!t || t->thread != w->index || t->id != id ||
	    atomic_load(&owner[id]) != w->index + 1)
		w->lost++;
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	DECLARE_IOASID_SET(declared);
	struct ioasid_set *set = w->set ? w->set : &declared;
	struct tag tags[HELD];
	int live[HELD] = { 0 };
	unsigned seed = 12345u + (unsigned)w->index * 7919u;

	for (long i = 0; i < w->iterations; i++) {
		seed = seed * 1103515245u + 12345u;
		int slot = (int)((seed >> 8) % HELD);
		if (!live[slot]) {
			tags[slot].thread = w->index;
			tags[slot].id = INVALID_IOASID;
			ioasid_t id = ioasid_alloc(set, RANGE_MIN, RANGE_MAX, &tags[slot]);
			if (id == INVALID_IOASID || id > RANGE_MAX) {
				w->bad_finds++;
				continue;
			}
			int expected = 0;
			if (!atomic_compare_exchange_strong(&owner[id], &expected, w->index + 1))
				w->collisions++;
			tags[slot].id = id;
			live[slot] = 1;
			w->allocs++;
		} else {
			ioasid_t id = tags[slot].id;
			struct tag *t = ioasid_find(set, id, NULL);
			if (t != &tags[slot] || t->thread != w->index || t->id != id)
				w->bad_finds++;
			if (ioasid_find(NULL, id, NULL) != &tags[slot])
				w->bad_finds++;
			atomic_store(&owner[id], 0);
			if (i % 2)
				ioasid_free(id);
			else if (ioasid_set_free(set, id) != 0)
				w->bad_finds++;
			live[slot] = 0;
			w->frees++;
		}
		/* Someone else's ID (or a free one) is never this set's. */
		ioasid_t probe = RANGE_MIN + (seed >> 12) % 4096;
		int who = atomic_load(&owner[probe]);
		if (who != 0 && who != w->index + 1) {
			void *p = ioasid_find(set, probe, NULL);
			if (!IS_ERR(p))
				w->foreign_hits++;
		}
	}

	/* None lost: the set holds exactly the IDs this thread holds. */
	int held = 0;
	for (int s = 0; s < HELD; s++)
		held += live[s];
	struct worker counted = *w;
	counted.lost = 0;
	CHECK_EQ(ioasid_set_for_each(set, count_ids, &counted), 0);
	w->lost = counted.lost;
	int seen = 0;
	for (int s = 0; s < HELD; s++)
		if (live[s] && ioasid_find(set, tags[s].id, NULL) == &tags[s])
			seen++;
	CHECK_EQ(seen, held);
	w->held = held;
	for (int s = 0; s < HELD; s++)
		if (live[s])
			atomic_store(&owner[tags[s].id], 0);
	/* Declared sets are destroyed here; initialised ones by main. */
	if (!w->set)
		ioasid_set_destroy(&declared);
	return NULL;
}

/* Phase 2: all threads allocate at once into one declared set that no one
 * initialised: the lazy install must give them all the same set. */
#define SHARED_EACH 1000
static DECLARE_IOASID_SET(shared_set);
static pthread_barrier_t start_line;
static ioasid_t shared_ids[THREADS][SHARED_EACH];

static void *shared_main(void *arg)
{
	int index = (int)(intptr_t)arg;
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < SHARED_EACH; i++)
		shared_ids[index][i] = ioasid_alloc(&shared_set, RANGE_MIN, RANGE_MAX,
						    (void *)(intptr_t)(index * SHARED_EACH + i + 1));
	return NULL;
}

static int count_shared(ioasid_t id, void *data, void *arg)
{
	long *count = arg;
	intptr_t tag = (intptr_t)data - 1;
	if (tag >= 0 && tag < THREADS * SHARED_EACH &&
	    shared_ids[tag / SHARED_EACH][tag % SHARED_EACH] == id)
		(*count)++;
	return 0;
}

static void test_shared_declared_set(void)
{
	pthread_t threads[THREADS];
	CHECK(pthread_barrier_init(&start_line, NULL, THREADS) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&threads[i], NULL, shared_main, (void *)(intptr_t)i) == 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start_line);
	int invalid = 0;
	for (int i = 0; i < THREADS; i++)
		for (int j = 0; j < SHARED_EACH; j++)
			invalid += shared_ids[i][j] == INVALID_IOASID;
	CHECK_EQ(invalid, 0);
	/* Every ID is in the one set, with its own tag. */
	long counted = 0;
	CHECK_EQ(ioasid_set_for_each(&shared_set, count_shared, &counted), 0);
	CHECK_EQ(counted, THREADS * SHARED_EACH);
	CHECK_EQ(ioasid_space_live_count(NULL), THREADS * SHARED_EACH);
	ioasid_set_destroy(&shared_set);
	CHECK_EQ(ioasid_space_live_count(NULL), 0);
}

/* Declared sets come and go in every thread (automatic storage, no
 * teardown) while each thread also keeps one declared set that is often
 * empty: reclaiming idle states races their use, and no call ever sees
 * another set's ID or data. */
static long churn_iterations;

static void *churn_main(void *arg)
{
	long bad = 0;
	(void)arg;
	DECLARE_IOASID_SET(kept);
	int kept_tag, scoped_tag;
	for (long i = 0; i < churn_iterations; i++) {
		ioasid_t k = ioasid_alloc(&kept, 1, 0xFFFFF, &kept_tag);
		DECLARE_IOASID_SET(scoped);
		ioasid_t s = ioasid_alloc(&scoped, 1, 0xFFFFF, &scoped_tag);
		int b0 = k == INVALID_IOASID || s == INVALID_IOASID;
		int b1 = ioasid_find(&kept, k, NULL) != &kept_tag;
		int b2 = ioasid_find(&scoped, s, NULL) != &scoped_tag;
		int b3 = PTR_ERR(ioasid_find(&kept, s, NULL)) != -EACCES;
		int b4 = ioasid_set_free(&kept, s) != -EACCES;
		int b5 = ioasid_set_free(&scoped, s) != 0;
		int b6 = ioasid_set_free(&kept, k) != 0;
		if (b0 || b1 || b2 || b3 || b4 || b5 || b6)
			fprintf(stderr, "churn: %d%d%d%d%d%d%d\n", b0, b1, b2, b3, b4, b5, b6);
		bad += b0 + b1 + b2 + b3 + b4 + b5 + b6;
	}
	return (void *)(intptr_t)bad;
}

static void test_declared_set_churn(long iterations)
{
	pthread_t threads[THREADS];
	churn_iterations = iterations;
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&threads[i], NULL, churn_main, NULL) == 0);
	long bad = 0;
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		pthread_join(threads[i], &ret);
		bad += (long)(intptr_t)ret;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(ioasid_space_live_count(NULL), 0);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 20000;
	pthread_t threads[THREADS];
	struct worker workers[THREADS] = { 0 };
	static struct ioasid_set initialised[THREADS];

	for (int i = 0; i < THREADS; i++) {
		workers[i].index = i;
		workers[i].iterations = iterations;
		if (i % 2) {
			CHECK_EQ(ioasid_set_init(&initialised[i], NULL, HELD), 0);
			workers[i].set = &initialised[i];
		}
		CHECK(pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0);
	}
	long allocs = 0, frees = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(threads[i], NULL);
		CHECK_EQ(workers[i].collisions, 0);
		CHECK_EQ(workers[i].bad_finds, 0);
		CHECK_EQ(workers[i].foreign_hits, 0);
		CHECK_EQ(workers[i].lost, 0);
		CHECK(workers[i].allocs > iterations / 4);
		allocs += workers[i].allocs;
		frees += workers[i].frees;
	}
	/* Even threads destroyed their declared sets; the odd threads' sets
	 * still hold what their threads held at the end. */
	long still_held = 0;
	for (int i = 0; i < THREADS; i++)
		if (workers[i].set)
			still_held += workers[i].held;
	CHECK_EQ(ioasid_space_live_count(NULL), still_held);
	for (int i = 0; i < THREADS; i++)
		if (workers[i].set)
			ioasid_set_destroy(workers[i].set);
	CHECK_EQ(ioasid_space_live_count(NULL), 0);
	test_shared_declared_set();
	test_declared_set_churn(iterations / 10);
	printf("threads: %d threads, %ld allocs, %ld frees\n", THREADS, allocs, frees);
	return check_report("threads");
}
