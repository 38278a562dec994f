/* Set private IDs (SPEC 6.5): ioasid_attach_spid, ioasid_detach_spid,
 * ioasid_find_by_spid with and without get; every error (EINVAL first),
 * NULL everywhere, edge IDs and SPIDs, two VMs using the same SPID for
 * different host IDs, detach on free / FREE_PENDING / last put / a set's
 * teardown by its last put, and threads racing attach, find and free. */
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

static const ioasid_t edges[4] = { 0, 1, 0xFFFFF, 0xFFFFFFFE };

static void test_errors_and_null(void)
{
	DECLARE_IOASID_SET(vm);
	DECLARE_IOASID_SET(never);
	ioasid_t a = ioasid_alloc(&vm, 1, 100, NULL);
	ioasid_t b = ioasid_alloc(&vm, 1, 100, NULL);

	CHECK(a != INVALID_IOASID && b != INVALID_IOASID);
	/* EINVAL first: before "not live" and "exists". */
	CHECK_EQ(ioasid_attach_spid(INVALID_IOASID, 5), -EINVAL);
	CHECK_EQ(ioasid_attach_spid(a, INVALID_IOASID), -EINVAL);
	CHECK_EQ(ioasid_attach_spid(INVALID_IOASID, INVALID_IOASID), -EINVAL);
	CHECK_EQ(ioasid_attach_spid(12345, 5), -ENOENT);
	CHECK_EQ(ioasid_attach_spid(a, 5), 0);
	CHECK_EQ(ioasid_attach_spid(a, INVALID_IOASID), -EINVAL);
	CHECK_EQ(ioasid_attach_spid(b, 5), -EEXIST);
	CHECK_EQ(ioasid_attach_spid(a, 6), -EEXIST);
	CHECK_EQ(ioasid_attach_spid(a, 5), -EEXIST);
	/* Nothing changed. */
	CHECK_EQ(ioasid_find_by_spid(&vm, 5, false), a);
	CHECK_EQ(ioasid_find_by_spid(&vm, 6, false), INVALID_IOASID);
	/* NULL and never-used sets find nothing; bad SPIDs neither. */
	CHECK_EQ(ioasid_find_by_spid(NULL, 5, false), INVALID_IOASID);
	CHECK_EQ(ioasid_find_by_spid(NULL, 5, true), INVALID_IOASID);
	CHECK_EQ(ioasid_find_by_spid(&never, 5, true), INVALID_IOASID);
	CHECK_EQ(ioasid_find_by_spid(&vm, INVALID_IOASID, false), INVALID_IOASID);
	/* Detach: no-ops for unknown IDs and IDs without a SPID. */
	ioasid_detach_spid(INVALID_IOASID);
	ioasid_detach_spid(12345);
	ioasid_detach_spid(b);
	CHECK_EQ(ioasid_find_by_spid(&vm, 5, false), a);
	ioasid_detach_spid(a);
	CHECK_EQ(ioasid_find_by_spid(&vm, 5, false), INVALID_IOASID);
	ioasid_detach_spid(a);
	/* Re-attach after detach; the SPID moves to another ID. */
	CHECK_EQ(ioasid_attach_spid(b, 5), 0);
	CHECK_EQ(ioasid_find_by_spid(&vm, 5, false), b);
	/* The NULL set's IDs take SPIDs too. */
	ioasid_t n = ioasid_alloc(NULL, 1, 100, NULL);
	CHECK_EQ(ioasid_attach_spid(n, 5), 0);
	ioasid_free(n);
	ioasid_set_destroy(&vm);
	CHECK_EQ(live(), 0);
}

static void test_edges(void)
{
	DECLARE_IOASID_SET(vm);

	for (int i = 0; i < 4; i++)
		CHECK_EQ(ioasid_alloc(&vm, edges[i], edges[i], NULL), edges[i]);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ioasid_attach_spid(edges[i], edges[3 - i]), 0);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(ioasid_find_by_spid(&vm, edges[3 - i], false), edges[i]);
		CHECK_EQ(ioasid_find_by_spid(&vm, edges[3 - i], true), edges[i]);
		CHECK(!ioasid_put(edges[i])); /* the find's reference */
	}
	for (int i = 0; i < 4; i++)
		ioasid_free(edges[i]);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ioasid_find_by_spid(&vm, edges[i], false), INVALID_IOASID);
	ioasid_set_destroy(&vm);
	CHECK_EQ(live(), 0);
}

static void test_two_vms(void)
{
	static char mm1, mm2;
	struct ioasid_set *vm1 = ioasid_alloc_set(&mm1, 10, IOASID_SET_TYPE_MM);
	struct ioasid_set *vm2 = ioasid_alloc_set(&mm2, 10, IOASID_SET_TYPE_MM);

	CHECK(!IS_ERR_OR_NULL(vm1) && !IS_ERR_OR_NULL(vm2));
	ioasid_t h1 = ioasid_alloc(vm1, 1, 0xFFFFF, NULL);
	ioasid_t h2 = ioasid_alloc(vm2, 1, 0xFFFFF, NULL);
	CHECK_EQ(ioasid_attach_spid(h1, 101), 0);
	CHECK_EQ(ioasid_attach_spid(h2, 101), 0);
	CHECK_EQ(ioasid_find_by_spid(vm1, 101, false), h1);
	CHECK_EQ(ioasid_find_by_spid(vm2, 101, false), h2);
	/* The IOMMU takes a reference by SPID; the guest frees: FREE_PENDING,
	 * the SPID detached at once, no new reference by it. */
	CHECK_EQ(ioasid_find_by_spid(vm1, 101, true), h1);
	ioasid_free(h1);
	CHECK_EQ(ioasid_find_by_spid(vm1, 101, false), INVALID_IOASID);
	CHECK_EQ(ioasid_find_by_spid(vm1, 101, true), INVALID_IOASID);
	CHECK_EQ(ioasid_get_checked(NULL, h1), -ENOENT);
	CHECK(ioasid_put(h1));
	/* vm2's mapping is untouched. */
	CHECK_EQ(ioasid_find_by_spid(vm2, 101, false), h2);
	/* A last put of an ID never freed detaches too. */
	ioasid_t h3 = ioasid_alloc(vm1, 1, 0xFFFFF, NULL);
	CHECK_EQ(ioasid_attach_spid(h3, 101), 0);
	CHECK(ioasid_put(h3));
	CHECK_EQ(ioasid_find_by_spid(vm1, 101, false), INVALID_IOASID);
	/* Teardown by the last put while an ID is referenced: FREE_PENDING,
	 * detached from the set and from its SPID. */
	ioasid_get(h2);
	ioasid_set_put(vm2);
	CHECK_EQ(ioasid_get_checked(NULL, h2), -ENOENT);
	CHECK_EQ(ioasid_attach_spid(h2, 7), -ENOENT);
	CHECK_EQ(live(), 1);
	CHECK(ioasid_put(h2));
	ioasid_set_put(vm1);
	CHECK_EQ(live(), 0);
}

/* Threads race attach, find (with get) and free on IDs [1, 4]. */
#define THREADS 4
#define ROUNDS 20000
static DECLARE_IOASID_SET(race_set);

static void *racer(void *arg)
{
	unsigned t = (unsigned)(size_t)arg;
	for (unsigned i = 0; i < ROUNDS; i++) {
		ioasid_t spid = (t + i) % 3;
		switch (i % 4) {
		case 0: {
			ioasid_t id = ioasid_alloc(&race_set, 1, 4, NULL);
			if (id != INVALID_IOASID) {
				int rc = ioasid_attach_spid(id, spid);
				CHECK(rc == 0 || rc == -EEXIST || rc == -ENOENT);
			}
			break;
		}
		case 1: {
			ioasid_t id = ioasid_find_by_spid(&race_set, spid, true);
			if (id != INVALID_IOASID) {
				CHECK(id >= 1 && id <= 4);
				ioasid_put(id);
			}
			break;
		}
		case 2:
			(void)ioasid_find_by_spid(&race_set, spid, false);
			break;
		default:
			ioasid_free(1 + (t + i) % 4);
		}
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t threads[THREADS];

	for (size_t t = 0; t < THREADS; t++)
		CHECK_EQ(pthread_create(&threads[t], NULL, racer, (void *)t), 0);
	for (size_t t = 0; t < THREADS; t++)
		pthread_join(threads[t], NULL);
	for (ioasid_t id = 1; id <= 4; id++)
		ioasid_free(id);
	CHECK_EQ(live(), 0);
	for (ioasid_t spid = 0; spid < 3; spid++)
		CHECK_EQ(ioasid_find_by_spid(&race_set, spid, false), INVALID_IOASID);
	ioasid_set_destroy(&race_set);
}

int main(void)
{
	test_errors_and_null();
	test_edges();
	test_two_vms();
	test_threads();
	return check_report("spid");
}
