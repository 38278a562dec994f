/*
 * cbench: the C ABI of ioasid side by side, in one process, with what a C
 * user writes instead.
 *
 * Contenders (every one stores a pointer per ID, IDs in [1, 0xFFFFF]):
 *   ioasid           the C ABI (ioasid_alloc/ioasid_free, ioasid_find ...)
 *   ioasid-nolock    finds only: ioasid_find outside a read-side section
 *   mutex-ida        a pthread mutex around a lowest-free two-level bitmap
 *                    (a summary word per 4096 IDs, a top word per 256K IDs)
 *                    and a pointer slot per ID, like the kernel IDA
 *   rwlock-ida       the same under a pthread rwlock; finds take the read lock
 *   lockfree-bitmap  reference only: the same bitmap with atomic words (one
 *                    claim CAS, one slot store, one clear per pair), no
 *                    sets, quota or membership
 *
 * Workloads (each thread a tight loop for a fixed time or op count):
 *   lowest  alloc+free pairs, Lowest: ioasid_alloc on a DECLARE_IOASID_SET
 *           (the global space), ioasid_free
 *   notify  the same with one notifier_block on the global chain (ioasid
 *           sends ALLOC and FREE to it; the locks run their plain pair):
 *           what a registered notifier costs (SPEC 6.6)
 *   any     alloc+free pairs, Any: a private IOASID_POLICY_ANY space,
 *           one set (ioasid_set_init) shared by all threads,
 *           ioasid_alloc/ioasid_set_free; the locks still allocate lowest
 *   hot     finds of random IDs among 1024 live IDs
 *   random  finds of random IDs among 2^20 - 1 live IDs (all of [1, 0xFFFFF])
 *   spid    finds by set private ID among 1024 mapped
 *   cyclic  alloc+free pairs, Cyclic: a private IOASID_POLICY_CYCLIC space,
 *           one set shared by all threads, ioasid_alloc/ioasid_set_free;
 *           the locks still allocate lowest
 *   setfree lowest with the checked free of the set (ioasid_set_free on
 *           the DECLARE_IOASID_SET) instead of ioasid_free
 *
 * Every result is checked (an alloc outside the range or failing, a free
 * that fails, a find that returns the wrong pointer, IDs left live after a
 * run); any error makes the exit status 1. Ratios never do.
 *
 * Usage: cbench [--ms N] [--reps N] [--threads 1,2,4] [--workloads a,b]
 *               [--impls a,b] [--ops N] [--smoke]
 * Environment (overridden by arguments): CBENCH_MS, CBENCH_REPS,
 * CBENCH_THREADS, CBENCH_WORKLOADS, CBENCH_IMPLS.
 * --ops N: each thread runs exactly N operations (rounded up to 64) instead
 * of a timed loop; for callgrind, whose --toggle-collect=loop_<impl>_<work>
 * (e.g. loop_ioasid_lowest) then counts only the measured loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ioasid.h"

#define ID_MIN 1u
#define ID_MAX 0xFFFFFu
#define NIDS (1u << 20)
#define WORDS (NIDS / 64)
#define CHUNKS (NIDS / 4096)
#define TOPW (CHUNKS / 64)
#define HOT_IDS 1024u
#define BATCH 64
#define MAX_REPS 64
#define MAX_THREADS 256
#define CACHELINE 64

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* The pointer stored with an ID in the find workloads: never NULL, never an
 * error pointer, unique per ID. */
static inline void *value_of(uint32_t id)
{
	return (void *)(((uintptr_t)id << 4) | 8);
}

/* ---------------------------------------------------------------------- */
/* Baseline: a lowest-free two-level bitmap, used under a lock.           */
/* INVARIANT (under the lock): top bit c set iff summary[c] is all ones;  */
/* summary[c] bit w set iff bits[c*64+w] is all ones. ID 0 is reserved.   */

struct ida {
	uint64_t top[TOPW];
	uint64_t summary[CHUNKS];
	uint64_t bits[WORDS];
	void **slots;
};

static void ida_init(struct ida *a)
{
	memset(a->top, 0, sizeof a->top);
	memset(a->summary, 0, sizeof a->summary);
	memset(a->bits, 0, sizeof a->bits);
	a->bits[0] = 1; /* ID 0: PASID 0 means "no PASID" */
	a->slots = calloc(NIDS, sizeof(void *));
	if (!a->slots) {
		perror("calloc");
		exit(2);
	}
}

/* The lowest free ID, or -1 when full. */
static inline long ida_alloc(struct ida *a, void *ptr)
{
	for (unsigned t = 0; t < TOPW; t++) {
		uint64_t free_chunks = ~a->top[t];
		if (!free_chunks)
			continue;
		unsigned c = t * 64 + (unsigned)__builtin_ctzll(free_chunks);
		unsigned w = c * 64 + (unsigned)__builtin_ctzll(~a->summary[c]);
		uint64_t word = a->bits[w];
		unsigned b = (unsigned)__builtin_ctzll(~word);
		word |= 1ull << b;
		a->bits[w] = word;
		if (word == ~0ull) {
			a->summary[c] |= 1ull << (w & 63);
			if (a->summary[c] == ~0ull)
				a->top[t] |= 1ull << (c & 63);
		}
		unsigned id = w * 64 + b;
		a->slots[id] = ptr;
		return id;
	}
	return -1;
}

/* 0, or -ENOENT if `id` is not live. */
static inline int ida_free(struct ida *a, uint32_t id)
{
	if (id < ID_MIN || id > ID_MAX)
		return -ENOENT;
	unsigned w = id / 64, c = w / 64;
	uint64_t bit = 1ull << (id & 63);
	if (!(a->bits[w] & bit))
		return -ENOENT;
	a->bits[w] &= ~bit;
	a->summary[c] &= ~(1ull << (w & 63));
	a->top[c / 64] &= ~(1ull << (c & 63));
	a->slots[id] = NULL;
	return 0;
}

static inline void *ida_find(const struct ida *a, uint32_t id)
{
	return id < NIDS ? a->slots[id] : NULL;
}

static long ida_live(const struct ida *a)
{
	long n = 0;
	for (unsigned w = 0; w < WORDS; w++)
		n += __builtin_popcountll(a->bits[w]);
	return n - 1; /* ID 0 */
}

/* ---------------------------------------------------------------------- */
/* Reference: the same bitmap lock-free.                                  */
/* The summary and top bits are hints: a set bit means "probably full".   */
/* A freer that empties a slot of a full word clears the word's summary   */
/* bit after its bit clear; an allocator that sets a summary bit re-reads */
/* the word after it and clears the bit again if the word has room       */
/* (seq_cst on both sides: one of the two sees the other, Dekker-style),  */
/* so a hint cannot stay wrong once both are done. The benchmark never    */
/* fills a word at the contended low end, so these paths are cold.        */

struct lfb {
	_Alignas(CACHELINE) _Atomic uint64_t top[TOPW];
	_Alignas(CACHELINE) _Atomic uint64_t summary[CHUNKS];
	_Alignas(CACHELINE) _Atomic uint64_t bits[WORDS];
	_Atomic(void *) *slots;
};

static void lfb_init(struct lfb *l)
{
	for (unsigned i = 0; i < TOPW; i++)
		atomic_init(&l->top[i], 0);
	for (unsigned i = 0; i < CHUNKS; i++)
		atomic_init(&l->summary[i], 0);
	for (unsigned i = 0; i < WORDS; i++)
		atomic_init(&l->bits[i], 0);
	atomic_init(&l->bits[0], 1); /* ID 0 reserved */
	l->slots = calloc(NIDS, sizeof(*l->slots));
	if (!l->slots) {
		perror("calloc");
		exit(2);
	}
}

static void lfb_mark_full(_Atomic uint64_t *hint, uint64_t bit, _Atomic uint64_t *below, uint64_t below_full)
{
	atomic_fetch_or(hint, bit);
	if (atomic_load(below) != below_full)
		atomic_fetch_and(hint, ~bit);
}

static inline long lfb_alloc(struct lfb *l, void *ptr)
{
	for (unsigned t = 0; t < TOPW; t++) {
		uint64_t free_chunks = ~atomic_load_explicit(&l->top[t], memory_order_relaxed);
		while (free_chunks) {
			unsigned c = t * 64 + (unsigned)__builtin_ctzll(free_chunks);
			uint64_t free_words = ~atomic_load_explicit(&l->summary[c], memory_order_relaxed);
			while (free_words) {
				unsigned w = c * 64 + (unsigned)__builtin_ctzll(free_words);
				uint64_t word = atomic_load_explicit(&l->bits[w], memory_order_relaxed);
				while (word != ~0ull) {
					uint64_t bit = 1ull << __builtin_ctzll(~word);
					/* Acquire: the slot's previous owner cleared it before its
					 * release clear of this bit. */
					if (atomic_compare_exchange_weak_explicit(&l->bits[w], &word, word | bit,
										  memory_order_acquire,
										  memory_order_relaxed)) {
						unsigned id = w * 64 + (unsigned)__builtin_ctzll(bit);
						if ((word | bit) == ~0ull) {
							lfb_mark_full(&l->summary[c], 1ull << (w & 63), &l->bits[w], ~0ull);
							if (atomic_load(&l->summary[c]) == ~0ull)
								lfb_mark_full(&l->top[t], 1ull << (c & 63), &l->summary[c],
									      ~0ull);
						}
						/* Release: a finder that sees the pointer sees what it points to. */
						atomic_store_explicit(&l->slots[id], ptr, memory_order_release);
						return id;
					}
				}
				lfb_mark_full(&l->summary[c], 1ull << (w & 63), &l->bits[w], ~0ull);
				free_words &= free_words - 1;
			}
			free_chunks &= free_chunks - 1;
		}
	}
	return -1;
}

static inline int lfb_free(struct lfb *l, uint32_t id)
{
	if (id < ID_MIN || id > ID_MAX)
		return -ENOENT;
	unsigned w = id / 64, c = w / 64;
	uint64_t bit = 1ull << (id & 63);
	/* The owner's own store; nobody else writes a claimed slot. */
	atomic_store_explicit(&l->slots[id], NULL, memory_order_relaxed);
	/* Release: the slot clear above happens before the next claim. seq_cst
	 * where the word was full, for the hint protocol. */
	uint64_t old = atomic_fetch_and_explicit(&l->bits[w], ~bit, memory_order_seq_cst);
	if (unlikely(!(old & bit)))
		return -ENOENT;
	if (unlikely(old == ~0ull)) {
		uint64_t sold = atomic_fetch_and(&l->summary[c], ~(1ull << (w & 63)));
		if (sold == ~0ull)
			atomic_fetch_and(&l->top[c / 64], ~(1ull << (c & 63)));
	}
	return 0;
}

static inline void *lfb_find(struct lfb *l, uint32_t id)
{
	/* Acquire: pairs with the release store of the allocator. */
	return id < NIDS ? atomic_load_explicit(&l->slots[id], memory_order_acquire) : NULL;
}

static long lfb_live(struct lfb *l)
{
	long n = 0;
	for (unsigned w = 0; w < WORDS; w++)
		n += __builtin_popcountll(atomic_load(&l->bits[w]));
	return n - 1;
}

/* ---------------------------------------------------------------------- */
/* Contenders, workloads, cells.                                          */

enum impl { IMPL_IOASID, IMPL_IOASID_NOLOCK, IMPL_MUTEX, IMPL_RWLOCK, IMPL_LFB, NIMPLS };
static const char *const impl_names[NIMPLS] = {
	"ioasid", "ioasid-nolock", "mutex-ida", "rwlock-ida", "lockfree-bitmap",
};
enum workload { W_LOWEST, W_NOTIFY, W_ANY, W_HOT, W_RANDOM, W_SPID, W_CYCLIC, W_SETFREE, NWORKLOADS };
static const char *const workload_names[NWORKLOADS] = { "lowest", "notify", "any", "hot", "random",
							"spid", "cyclic", "setfree" };
static const char *const workload_titles[NWORKLOADS] = {
	"alloc+free pairs, Lowest (ioasid_alloc on a DECLARE_IOASID_SET / ioasid_free, global space)",
	"alloc+free pairs, Lowest, one notifier registered on the global chain (ioasid only notifies)",
	"alloc+free pairs, Any (IOASID_POLICY_ANY space, one shared set, ioasid_set_free; locks: lowest)",
	"find, hot: random IDs among 1024 live (ioasid_find(set, id, NULL))",
	"find, random: random IDs among 2^20-1 live (ioasid_find(set, id, NULL))",
	"find_by_spid, hot: random guest PASIDs among 1024 mapped (ioasid_find_by_spid(set, spid, false); "
	"locks: the same lookup in a SPID-indexed table under the lock)",
	"alloc+free pairs, Cyclic (IOASID_POLICY_CYCLIC space, one shared set, ioasid_set_free; locks: lowest)",
	"alloc+free pairs, Lowest, checked free (ioasid_alloc / ioasid_set_free on a DECLARE_IOASID_SET, global space)",
};

static bool impl_runs(enum impl i, enum workload w)
{
	/* ioasid-nolock is a find variant only. */
	return i != IMPL_IOASID_NOLOCK || w == W_HOT || w == W_RANDOM;
}

static DECLARE_IOASID_SET(global_set);
static struct ida the_ida;
static pthread_mutex_t ida_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t ida_rwlock = PTHREAD_RWLOCK_INITIALIZER;
static struct lfb the_lfb;

static _Atomic int stop_flag;
static pthread_barrier_t start_barrier;

struct cell {
	struct ioasid_set *set; /* lowest/hot/random: global_set; any: the Any set */
	uint32_t nlive;         /* finds: live IDs are 1..nlive */
	uint64_t fixed_ops;     /* 0: timed */
	bool single;            /* one thread: Lowest must return ID 1 */
};

struct worker {
	_Alignas(CACHELINE) pthread_t thread;
	const struct cell *cell;
	uint64_t rng;
	uint64_t ops;
	uint64_t errors;
};

static inline uint32_t next_id(uint64_t *rng, uint32_t nlive)
{
	uint64_t x = *rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rng = x;
	return 1 + (uint32_t)(((x >> 32) * (uint64_t)nlive) >> 32);
}

/* An alloc result check: in range, and ID 1 when one thread is alone on an
 * empty lowest-free space. */
static inline bool bad_id(long id, bool want_one)
{
	return (unsigned long)id - ID_MIN > ID_MAX - ID_MIN || (want_one && id != 1);
}

/* One measured loop per (contender, workload); `op` is one operation and
 * may use w, cx, rng, errors. Non-inlined so callgrind can count it. */
#define DEFINE_LOOP(name, op)                                                              \
	static __attribute__((noinline)) void name(struct worker *w)                       \
	{                                                                                  \
		const struct cell *cx = w->cell;                                           \
		uint64_t rng = w->rng, ops = 0, errors = 0;                                \
		(void)cx;                                                                  \
		(void)rng;                                                                 \
		for (;;) {                                                                 \
			for (int k = 0; k < BATCH; k++) {                                  \
				op;                                                        \
			}                                                                  \
			ops += BATCH;                                                      \
			if (cx->fixed_ops ? ops >= cx->fixed_ops                           \
					  : atomic_load_explicit(&stop_flag, memory_order_relaxed)) \
				break;                                                     \
		}                                                                          \
		w->ops = ops;                                                              \
		w->errors = errors;                                                        \
	}

/* alloc+free */
DEFINE_LOOP(loop_ioasid_lowest, {
	ioasid_t id = ioasid_alloc(cx->set, ID_MIN, ID_MAX, w);
	if (unlikely(id == INVALID_IOASID || bad_id(id, cx->single)))
		errors++;
	if (id != INVALID_IOASID)
		ioasid_free(id);
})
/* The notifier of the notify workload: counts its calls on this thread, so
 * the loop checks that each pair sent its ALLOC and its FREE. */
static _Thread_local uint64_t notified;
static int bench_notifier(struct notifier_block *nb, unsigned long action, void *data)
{
	(void)nb;
	(void)action;
	(void)data;
	notified++;
	return NOTIFY_DONE;
}
static struct notifier_block bench_nb = { bench_notifier, NULL, IOASID_PRIO_IOMMU };
DEFINE_LOOP(loop_ioasid_lowest_notify, {
	uint64_t before = notified;
	ioasid_t id = ioasid_alloc(cx->set, ID_MIN, ID_MAX, w);
	if (unlikely(id == INVALID_IOASID || bad_id(id, cx->single)))
		errors++;
	if (id != INVALID_IOASID)
		ioasid_free(id);
	if (unlikely(id != INVALID_IOASID && notified != before + 2))
		errors++;
})
DEFINE_LOOP(loop_ioasid_any, {
	ioasid_t id = ioasid_alloc(cx->set, ID_MIN, ID_MAX, w);
	if (unlikely(id == INVALID_IOASID || bad_id(id, false)))
		errors++;
	else if (unlikely(ioasid_set_free(cx->set, id) != 0))
		errors++;
})
DEFINE_LOOP(loop_ioasid_setfree, {
	ioasid_t id = ioasid_alloc(cx->set, ID_MIN, ID_MAX, w);
	if (unlikely(id == INVALID_IOASID || bad_id(id, cx->single)))
		errors++;
	else if (unlikely(ioasid_set_free(cx->set, id) != 0))
		errors++;
})
DEFINE_LOOP(loop_ioasid_cyclic, {
	ioasid_t id = ioasid_alloc(cx->set, ID_MIN, ID_MAX, w);
	if (unlikely(id == INVALID_IOASID || bad_id(id, false)))
		errors++;
	else if (unlikely(ioasid_set_free(cx->set, id) != 0))
		errors++;
})
#define IDA_ALLOC_FREE(lock, unlock)                                     \
	{                                                                \
		lock;                                                    \
		long id = ida_alloc(&the_ida, w);                        \
		unlock;                                                  \
		if (unlikely(id < 0 || bad_id(id, cx->single)))          \
			errors++;                                        \
		if (id >= 0) {                                           \
			lock;                                            \
			int rc = ida_free(&the_ida, (uint32_t)id);       \
			unlock;                                          \
			if (unlikely(rc))                                \
				errors++;                                \
		}                                                        \
	}
DEFINE_LOOP(loop_mutex_alloc,
	    IDA_ALLOC_FREE(pthread_mutex_lock(&ida_mutex), pthread_mutex_unlock(&ida_mutex)))
DEFINE_LOOP(loop_rwlock_alloc,
	    IDA_ALLOC_FREE(pthread_rwlock_wrlock(&ida_rwlock), pthread_rwlock_unlock(&ida_rwlock)))
DEFINE_LOOP(loop_lfb_alloc, {
	long id = lfb_alloc(&the_lfb, w);
	if (unlikely(id < 0 || bad_id(id, cx->single)))
		errors++;
	if (id >= 0 && unlikely(lfb_free(&the_lfb, (uint32_t)id)))
		errors++;
})

/* finds */
DEFINE_LOOP(loop_ioasid_find, {
	uint32_t id = next_id(&rng, cx->nlive);
	ioasid_read_lock();
	void *p = ioasid_find(cx->set, id, NULL);
	ioasid_read_unlock();
	if (unlikely(p != value_of(id)))
		errors++;
})
DEFINE_LOOP(loop_ioasid_nolock_find, {
	uint32_t id = next_id(&rng, cx->nlive);
	void *p = ioasid_find(cx->set, id, NULL);
	if (unlikely(p != value_of(id)))
		errors++;
})
DEFINE_LOOP(loop_ioasid_find_by_spid, {
	uint32_t spid = next_id(&rng, cx->nlive);
	ioasid_t id = ioasid_find_by_spid(cx->set, spid, false);
	if (unlikely(id != spid))
		errors++;
})
DEFINE_LOOP(loop_mutex_find, {
	uint32_t id = next_id(&rng, cx->nlive);
	pthread_mutex_lock(&ida_mutex);
	void *p = ida_find(&the_ida, id);
	pthread_mutex_unlock(&ida_mutex);
	if (unlikely(p != value_of(id)))
		errors++;
})
DEFINE_LOOP(loop_rwlock_find, {
	uint32_t id = next_id(&rng, cx->nlive);
	pthread_rwlock_rdlock(&ida_rwlock);
	void *p = ida_find(&the_ida, id);
	pthread_rwlock_unlock(&ida_rwlock);
	if (unlikely(p != value_of(id)))
		errors++;
})
DEFINE_LOOP(loop_lfb_find, {
	uint32_t id = next_id(&rng, cx->nlive);
	if (unlikely(lfb_find(&the_lfb, id) != value_of(id)))
		errors++;
})

typedef void (*loop_fn)(struct worker *);
static const loop_fn loops[NWORKLOADS][NIMPLS] = {
	[W_LOWEST] = { loop_ioasid_lowest, NULL, loop_mutex_alloc, loop_rwlock_alloc, loop_lfb_alloc },
	[W_NOTIFY] = { loop_ioasid_lowest_notify, NULL, loop_mutex_alloc, loop_rwlock_alloc,
		       loop_lfb_alloc },
	[W_ANY] = { loop_ioasid_any, NULL, loop_mutex_alloc, loop_rwlock_alloc, loop_lfb_alloc },
	[W_HOT] = { loop_ioasid_find, loop_ioasid_nolock_find, loop_mutex_find, loop_rwlock_find,
		    loop_lfb_find },
	[W_RANDOM] = { loop_ioasid_find, loop_ioasid_nolock_find, loop_mutex_find, loop_rwlock_find,
		       loop_lfb_find },
	/* SPID s maps to host ID s; the baselines look s up in their table. */
	[W_SPID] = { loop_ioasid_find_by_spid, NULL, loop_mutex_find, loop_rwlock_find, loop_lfb_find },
	[W_CYCLIC] = { loop_ioasid_cyclic, NULL, loop_mutex_alloc, loop_rwlock_alloc, loop_lfb_alloc },
	[W_SETFREE] = { loop_ioasid_setfree, NULL, loop_mutex_alloc, loop_rwlock_alloc, loop_lfb_alloc },
};

struct thread_arg {
	struct worker *w;
	loop_fn loop;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	pthread_barrier_wait(&start_barrier);
	a->loop(a->w);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t total_errors;

static void error(const char *what)
{
	fprintf(stderr, "ERROR: %s\n", what);
	total_errors++;
}

/* Runs one cell once: Mops/s. */
static double run_once(enum workload wl, enum impl im, int threads, struct cell *cx, unsigned ms,
		       uint64_t seed)
{
	static struct worker workers[MAX_THREADS];
	static struct thread_arg args[MAX_THREADS];
	bool private_space = wl == W_ANY || wl == W_CYCLIC;
	cx->single = threads == 1 &&
		     (wl == W_LOWEST || wl == W_SETFREE || (private_space && im != IMPL_IOASID));
	atomic_store(&stop_flag, 0);
	pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
	for (int t = 0; t < threads; t++) {
		workers[t] = (struct worker){ .cell = cx, .rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)t * 7919 + 1 };
		args[t] = (struct thread_arg){ .w = &workers[t], .loop = loops[wl][im] };
		if (pthread_create(&workers[t].thread, NULL, thread_main, &args[t])) {
			perror("pthread_create");
			exit(2);
		}
	}
	pthread_barrier_wait(&start_barrier);
	double t0 = now_s(), t1 = t0;
	if (!cx->fixed_ops) {
		struct timespec d = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
		nanosleep(&d, NULL);
		atomic_store(&stop_flag, 1);
		t1 = now_s();
	}
	uint64_t ops = 0;
	for (int t = 0; t < threads; t++) {
		pthread_join(workers[t].thread, NULL);
		ops += workers[t].ops;
		if (workers[t].errors) {
			char msg[160];
			snprintf(msg, sizeof msg, "%s/%s, %d threads: %llu wrong results", workload_names[wl],
				 impl_names[im], threads, (unsigned long long)workers[t].errors);
			error(msg);
		}
	}
	if (cx->fixed_ops)
		t1 = now_s();
	pthread_barrier_destroy(&start_barrier);
	return ops / (t1 - t0) / 1e6;
}

/* ---------------------------------------------------------------------- */
/* Setup and checks per workload.                                         */

static void check_count(const char *what, long got, long want)
{
	if (got != want) {
		char msg[160];
		snprintf(msg, sizeof msg, "%s: %ld live IDs, expected %ld", what, got, want);
		error(msg);
	}
}

/* Fills every contender with IDs 1..n (value_of(id) each). */
static void fill(uint32_t n)
{
	for (uint32_t i = 1; i <= n; i++) {
		ioasid_t id = ioasid_alloc(&global_set, ID_MIN, ID_MAX, value_of(i));
		long a = ida_alloc(&the_ida, value_of(i));
		long l = lfb_alloc(&the_lfb, value_of(i));
		if (id != i || a != i || l != i) {
			fprintf(stderr, "ERROR: fill %u: ioasid %u, ida %ld, lockfree %ld\n", i, id, a, l);
			exit(1);
		}
	}
}

static void unfill(uint32_t n)
{
	for (uint32_t i = 1; i <= n; i++) {
		ioasid_free(i);
		if (ida_free(&the_ida, i) || lfb_free(&the_lfb, i)) {
			error("unfill: a baseline free failed");
			return;
		}
	}
}

static void check_empty(const char *when)
{
	char what[96];
	snprintf(what, sizeof what, "global space after %s", when);
	check_count(what, ioasid_space_live_count(NULL), 0);
	snprintf(what, sizeof what, "ida after %s", when);
	check_count(what, ida_live(&the_ida), 0);
	snprintf(what, sizeof what, "lockfree-bitmap after %s", when);
	check_count(what, lfb_live(&the_lfb), 0);
}

/* ---------------------------------------------------------------------- */
/* Options and output.                                                    */

struct options {
	unsigned ms, reps;
	int threads[32], nthreads;
	bool workloads[NWORKLOADS];
	bool impls[NIMPLS];
	uint64_t ops;
	bool smoke;
};

static int parse_threads(const char *s, int *out)
{
	int n = 0;
	char *copy = strdup(s), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok && n < 32; tok = strtok_r(NULL, ",", &save)) {
		int t = atoi(tok);
		if (t < 1 || t > MAX_THREADS) {
			fprintf(stderr, "bad thread count '%s' (1..%d)\n", tok, MAX_THREADS);
			exit(2);
		}
		out[n++] = t;
	}
	free(copy);
	return n;
}

static void parse_names(const char *s, const char *const *names, int count, bool *out, const char *what)
{
	memset(out, 0, sizeof(bool) * (size_t)count);
	char *copy = strdup(s), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int i;
		for (i = 0; i < count && strcmp(tok, names[i]); i++)
			;
		if (i == count) {
			fprintf(stderr, "unknown %s '%s'\n", what, tok);
			exit(2);
		}
		out[i] = true;
	}
	free(copy);
}

static void usage(void)
{
	fprintf(stderr, "usage: cbench [--ms N] [--reps N] [--threads 1,2,4,8,16] "
			"[--workloads lowest,notify,any,hot,random,spid,cyclic,setfree]\n"
			"              [--impls ioasid,ioasid-nolock,mutex-ida,rwlock-ida,lockfree-bitmap] "
			"[--ops N] [--smoke]\n");
	exit(2);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct stats {
	double median, min, max;
	bool ran;
};

static struct stats summarize(double *v, unsigned n)
{
	qsort(v, n, sizeof *v, cmp_double);
	double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return (struct stats){ .median = median, .min = v[0], .max = v[n - 1], .ran = true };
}

static void print_loadavg(const char *when)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (!fgets(buf, sizeof buf, f))
			strcpy(buf, "?\n");
		fclose(f);
	}
	printf("load average %s: %s", when, buf);
}

int main(int argc, char **argv)
{
	struct options o = { .ms = 300, .reps = 3, .threads = { 1, 2, 4, 8, 16 }, .nthreads = 5 };
	for (int i = 0; i < NWORKLOADS; i++)
		o.workloads[i] = true;
	for (int i = 0; i < NIMPLS; i++)
		o.impls[i] = true;
	const char *env;
	if ((env = getenv("CBENCH_MS")))
		o.ms = (unsigned)atoi(env);
	if ((env = getenv("CBENCH_REPS")))
		o.reps = (unsigned)atoi(env);
	if ((env = getenv("CBENCH_THREADS")))
		o.nthreads = parse_threads(env, o.threads);
	if ((env = getenv("CBENCH_WORKLOADS")))
		parse_names(env, workload_names, NWORKLOADS, o.workloads, "workload");
	if ((env = getenv("CBENCH_IMPLS")))
		parse_names(env, impl_names, NIMPLS, o.impls, "contender");
	bool threads_given = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--smoke")) {
			o.smoke = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--ms"))
			o.ms = (unsigned)atoi(v);
		else if (!strcmp(a, "--reps"))
			o.reps = (unsigned)atoi(v);
		else if (!strcmp(a, "--threads")) {
			o.nthreads = parse_threads(v, o.threads);
			threads_given = true;
		} else if (!strcmp(a, "--workloads"))
			parse_names(v, workload_names, NWORKLOADS, o.workloads, "workload");
		else if (!strcmp(a, "--impls"))
			parse_names(v, impl_names, NIMPLS, o.impls, "contender");
		else if (!strcmp(a, "--ops"))
			o.ops = strtoull(v, NULL, 10);
		else
			usage();
	}
	if (o.smoke) {
		o.ms = 20;
		o.reps = 1;
		if (!threads_given && !getenv("CBENCH_THREADS")) {
			o.threads[0] = 1;
			o.threads[1] = 2;
			o.nthreads = 2;
		}
	}
	if (o.reps < 1 || o.reps > MAX_REPS || (!o.ms && !o.ops) || !o.nthreads)
		usage();

	ida_init(&the_ida);
	lfb_init(&the_lfb);
	print_loadavg("at start");
	printf("%s: %u ms per run, %u reps; median [min-max] Mops/s (operations: an alloc+free pair, or a find)\n",
	       o.ops ? "fixed operation count" : "timed", o.ms, o.reps);
	if (o.ops)
		printf("%llu operations per thread per run\n", (unsigned long long)o.ops);

	for (int wl = 0; wl < NWORKLOADS; wl++) {
		if (!o.workloads[wl])
			continue;
		struct cell cx = { .set = &global_set, .fixed_ops = o.ops };
		struct ioasid_space *any_space = NULL;
		static DECLARE_IOASID_SET(any_set);
		if (wl == W_HOT || wl == W_RANDOM) {
			cx.nlive = wl == W_HOT ? HOT_IDS : ID_MAX;
			fill(cx.nlive);
			check_count("global space after fill", ioasid_space_live_count(NULL), cx.nlive);
		}
		if (wl == W_SPID) {
			cx.nlive = HOT_IDS;
			fill(cx.nlive);
			for (uint32_t i = 1; i <= cx.nlive; i++) {
				if (ioasid_attach_spid(i, i) != 0) {
					error("ioasid_attach_spid failed");
					return 1;
				}
			}
		}
		if (wl == W_NOTIFY && ioasid_register_notifier(NULL, &bench_nb) != 0) {
			error("ioasid_register_notifier failed");
			return 1;
		}
		bool private_space = wl == W_ANY || wl == W_CYCLIC;
		if (private_space) {
			any_space = ioasid_space_create(ID_MIN, ID_MAX,
							wl == W_ANY ? IOASID_POLICY_ANY : IOASID_POLICY_CYCLIC);
			if (!any_space || ioasid_set_init(&any_set, any_space, 0) != 0) {
				error("ioasid_space_create / ioasid_set_init failed");
				return 1;
			}
		}
		static struct stats table[32][NIMPLS];
		memset(table, 0, sizeof table);
		for (int ti = 0; ti < o.nthreads; ti++) {
			double samples[NIMPLS][MAX_REPS];
			for (unsigned rep = 0; rep < o.reps; rep++) {
				/* Contenders interleaved, so load changes spread over all. */
				for (int im = 0; im < NIMPLS; im++) {
					if (!o.impls[im] || !impl_runs(im, wl))
						continue;
					cx.set = private_space && im == IMPL_IOASID ? &any_set : &global_set;
					samples[im][rep] = run_once(wl, im, o.threads[ti], &cx, o.ms, rep * 31 + ti);
					if (private_space && im == IMPL_IOASID)
						check_count("private space after a run", ioasid_space_live_count(any_space),
							    0);
				}
			}
			for (int im = 0; im < NIMPLS; im++)
				if (o.impls[im] && impl_runs(im, wl))
					table[ti][im] = summarize(samples[im], o.reps);
		}
		if (wl == W_HOT || wl == W_RANDOM || wl == W_SPID)
			unfill(cx.nlive);
		if (wl == W_NOTIFY)
			ioasid_unregister_notifier(NULL, &bench_nb);
		if (any_space) {
			ioasid_set_destroy(&any_set);
			ioasid_space_destroy(any_space);
		}
		check_empty(workload_names[wl]);

		/* The table, as markdown. */
		printf("\n### %s\n\n| threads |", workload_titles[wl]);
		for (int im = 0; im < NIMPLS; im++)
			if (o.impls[im] && impl_runs(im, wl))
				printf(" %s |", impl_names[im]);
		bool ratios = o.impls[IMPL_MUTEX] || o.impls[IMPL_RWLOCK];
		bool nolock = impl_runs(IMPL_IOASID_NOLOCK, wl) && o.impls[IMPL_IOASID_NOLOCK];
		if (ratios && o.impls[IMPL_IOASID])
			printf(" ioasid / best lock |");
		if (ratios && nolock)
			printf(" ioasid-nolock / best lock |");
		printf("\n|---|");
		for (int im = 0; im < NIMPLS; im++)
			if (o.impls[im] && impl_runs(im, wl))
				printf("---|");
		if (ratios && o.impls[IMPL_IOASID])
			printf("---|");
		if (ratios && nolock)
			printf("---|");
		printf("\n");
		for (int ti = 0; ti < o.nthreads; ti++) {
			printf("| %d |", o.threads[ti]);
			for (int im = 0; im < NIMPLS; im++) {
				struct stats s = table[ti][im];
				if (s.ran)
					printf(o.reps > 1 ? " %.2f [%.2f-%.2f] |" : " %.2f |", s.median, s.min,
					       s.max);
			}
			double best = 0;
			if (table[ti][IMPL_MUTEX].ran)
				best = table[ti][IMPL_MUTEX].median;
			if (table[ti][IMPL_RWLOCK].ran && table[ti][IMPL_RWLOCK].median > best)
				best = table[ti][IMPL_RWLOCK].median;
			if (ratios && o.impls[IMPL_IOASID])
				printf(" %.2fx |", table[ti][IMPL_IOASID].median / best);
			if (ratios && nolock)
				printf(" %.2fx |", table[ti][IMPL_IOASID_NOLOCK].median / best);
			printf("\n");
		}
		fflush(stdout);
	}
	printf("\n");
	print_loadavg("at end");
	if (total_errors) {
		printf("cbench: %llu errors\n", (unsigned long long)total_errors);
		return 1;
	}
	printf("cbench: no errors\n");
	return 0;
}
