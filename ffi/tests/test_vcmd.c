/* A paravirtual custom allocator in the shape of Intel's virtual-command
 * allocator (intel_vcmd_ioasid_alloc/free): a "host" owns a bitmap of
 * PASIDs; the guest's free hook looks the ID up with ioasid_find and frees
 * it on the host only if it finds it. That works only if the library calls
 * the free hook while the ID is still recorded (SPEC 6.3). 8 threads
 * allocate and free through it; afterwards host and library agree exactly,
 * and once everything is freed the host holds nothing.
 * The iteration count is argv[1] (default 20000 per thread). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "ioasid.h"
#include "check.h"

#define THREADS 8
#define HELD 16
#define HOST_MIN 1u
#define HOST_SIZE 1024u

/* The host: used[i] says whether PASID HOST_MIN + i is allocated. */
static struct {
	pthread_mutex_t lock;
	unsigned char used[HOST_SIZE];
	long allocs, frees, free_not_found, double_free;
} host = { .lock = PTHREAD_MUTEX_INITIALIZER };

static ioasid_t vcmd_alloc(ioasid_t min, ioasid_t max, void *pdata)
{
	(void)pdata;
	ioasid_t got = INVALID_IOASID;
	pthread_mutex_lock(&host.lock);
	for (unsigned i = 0; i < HOST_SIZE; i++) {
		ioasid_t id = HOST_MIN + i;
		if (id >= min && id <= max && !host.used[i]) {
			host.used[i] = 1;
			host.allocs++;
			got = id;
			break;
		}
	}
	pthread_mutex_unlock(&host.lock);
	return got;
}

/* As intel_vcmd_ioasid_free: only an ID the guest still knows goes back to
 * the host. */
static void vcmd_free(ioasid_t id, void *pdata)
{
	(void)pdata;
	void *found = ioasid_find(NULL, id, NULL);
	pthread_mutex_lock(&host.lock);
	if (IS_ERR(found)) {
		host.free_not_found++;
	} else if (id < HOST_MIN || id >= HOST_MIN + HOST_SIZE || !host.used[id - HOST_MIN]) {
		host.double_free++;
	} else {
		host.used[id - HOST_MIN] = 0;
		host.frees++;
	}
	pthread_mutex_unlock(&host.lock);
}

static struct ioasid_allocator_ops vcmd_ops = { .alloc = vcmd_alloc, .free = vcmd_free };

struct worker {
	int index;
	long iterations;
	ioasid_t held[HELD];
	int tags[HELD];
	long allocs, failed, bad_finds;
};

/* Static sets, as kernel code declares them (one per thread). */
static struct ioasid_set sets[THREADS];

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ioasid_set *set = &sets[w->index];
	unsigned seed = 777u + (unsigned)w->index * 7919u;

	for (int slot = 0; slot < HELD; slot++)
		w->held[slot] = INVALID_IOASID;
	for (long i = 0; i < w->iterations; i++) {
		seed = seed * 1103515245u + 12345u;
		int slot = (int)((seed >> 8) % HELD);
		if (w->held[slot] == INVALID_IOASID) {
			ioasid_t id = ioasid_alloc(set, HOST_MIN, 0xFFFFF, &w->tags[slot]);
			if (id == INVALID_IOASID) {
				w->failed++;
				continue;
			}
			w->allocs++;
			w->held[slot] = id;
		} else {
			ioasid_t id = w->held[slot];
			if (ioasid_find(set, id, NULL) != &w->tags[slot])
				w->bad_finds++;
			ioasid_free(id);
			w->held[slot] = INVALID_IOASID;
		}
	}
	/* Keep what is held for the agreement check; main frees it. */
	return NULL;
}

/* Host and library agree: every PASID the host has allocated is live in
 * the library, and nothing else is. */
static void check_agreement(long expected_live)
{
	long host_used = 0, disagree = 0;
	for (unsigned i = 0; i < HOST_SIZE; i++) {
		int live = !IS_ERR(ioasid_find(NULL, HOST_MIN + i, NULL));
		host_used += host.used[i];
		if (live != host.used[i])
			disagree++;
	}
	CHECK_EQ(disagree, 0);
	CHECK_EQ(host_used, expected_live);
	CHECK_EQ(ioasid_space_live_count(NULL), expected_live);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 20000;
	static struct worker workers[THREADS];
	pthread_t threads[THREADS];

	CHECK_EQ(ioasid_register_allocator(&vcmd_ops), 0);
	for (int t = 0; t < THREADS; t++) {
		workers[t].index = t;
		workers[t].iterations = iterations;
		CHECK_EQ(pthread_create(&threads[t], NULL, worker_main, &workers[t]), 0);
	}
	long held = 0, allocs = 0;
	for (int t = 0; t < THREADS; t++) {
		CHECK_EQ(pthread_join(threads[t], NULL), 0);
		CHECK_EQ(workers[t].failed, 0);
		CHECK_EQ(workers[t].bad_finds, 0);
		allocs += workers[t].allocs;
		for (int slot = 0; slot < HELD; slot++)
			held += workers[t].held[slot] != INVALID_IOASID;
	}
	CHECK_EQ(host.allocs, allocs);
	CHECK_EQ(host.free_not_found, 0);
	CHECK_EQ(host.double_free, 0);
	check_agreement(held);

	for (int t = 0; t < THREADS; t++)
		for (int slot = 0; slot < HELD; slot++)
			if (workers[t].held[slot] != INVALID_IOASID)
				ioasid_free(workers[t].held[slot]);
	check_agreement(0);
	CHECK_EQ(host.frees, host.allocs);
	CHECK_EQ(host.free_not_found, 0);
	ioasid_unregister_allocator(&vcmd_ops);
	return check_report("vcmd");
}
