/* Custom allocators (ioasid_register_allocator): the kernel's registration
 * rules, allocation and free through the active allocator, fallback on
 * unregister, bad answers refused (-EIO) and handed back to the allocator's
 * free, and bad input changing nothing. */
#include <errno.h>
#include <string.h>

#include "ioasid.h"
#include "check.h"

/* A paravirtual "host" handing out IDs [base, base + 63]. */
struct host {
	ioasid_t base;
	unsigned char used[64];
	int allocs, frees;
	ioasid_t last_freed;
};

static ioasid_t host_alloc(ioasid_t min, ioasid_t max, void *pdata)
{
	struct host *h = pdata;
	h->allocs++;
	for (ioasid_t i = 0; i < 64; i++) {
		ioasid_t id = h->base + i;
		if (id >= min && id <= max && !h->used[i]) {
			h->used[i] = 1;
			return id;
		}
	}
	return INVALID_IOASID;
}

static void host_free(ioasid_t id, void *pdata)
{
	struct host *h = pdata;
	h->frees++;
	h->last_freed = id;
	if (id >= h->base && id < h->base + 64)
		h->used[id - h->base] = 0;
}

/* A second pair of functions (another group), same behaviour. */
static ioasid_t host2_alloc(ioasid_t min, ioasid_t max, void *pdata)
{
	return host_alloc(min, max, pdata);
}

static void host2_free(ioasid_t id, void *pdata)
{
	host_free(id, pdata);
}

/* Answers with a fixed ID whatever the range. */
static ioasid_t fixed_alloc(ioasid_t min, ioasid_t max, void *pdata)
{
	(void)min;
	(void)max;
	return *(ioasid_t *)pdata;
}

/* The IDs handed back to fixed_free, in order. */
static ioasid_t fixed_freed[16];
static int fixed_frees;
static void fixed_free(ioasid_t id, void *pdata)
{
	(void)pdata;
	if (fixed_frees < 16)
		fixed_freed[fixed_frees] = id;
	fixed_frees++;
}

static long live(void)
{
	return ioasid_space_live_count(NULL);
}

static void test_registration_rules(void)
{
	static struct host h1 = { .base = 1000 };
	static struct ioasid_allocator_ops ops1 = { .alloc = host_alloc, .free = host_free, .pdata = &h1 };
	struct ioasid_allocator_ops no_alloc = { .free = host_free };
	struct ioasid_allocator_ops no_free = { .alloc = host_alloc };
	DECLARE_IOASID_SET(s);

	CHECK_EQ(ioasid_register_allocator(NULL), -EINVAL);
	CHECK_EQ(ioasid_register_allocator(&no_alloc), -EINVAL);
	CHECK_EQ(ioasid_register_allocator(&no_free), -EINVAL);

	/* The default allocator holds a live ID: -EAGAIN. */
	ioasid_t id = ioasid_alloc(&s, 0, 100, NULL);
	CHECK_EQ(id, 0);
	CHECK_EQ(ioasid_register_allocator(&ops1), -EAGAIN);
	/* Nothing changed: allocation still by the default allocator. */
	CHECK_EQ(ioasid_alloc(&s, 0, 100, NULL), 1);
	CHECK_EQ(h1.allocs, 0);
	ioasid_set_destroy(&s);
	CHECK_EQ(live(), 0);

	CHECK_EQ(ioasid_register_allocator(&ops1), 0);
	CHECK_EQ(ioasid_register_allocator(&ops1), -EEXIST);

	/* Allocation asks the custom allocator; find and for_each work. */
	int data = 5;
	id = ioasid_alloc(&s, 0, 5000, &data);
	CHECK_EQ(id, 1000);
	CHECK_EQ(h1.allocs, 1);
	CHECK(ioasid_find(&s, id, NULL) == &data);
	CHECK_EQ(ioasid_alloc(&s, 0, 5000, NULL), 1001);
	/* The allocator's INVALID_IOASID fails the allocation. */
	long before = live();
	CHECK_EQ(ioasid_alloc(&s, 0, 999, NULL), INVALID_IOASID);
	CHECK_EQ(live(), before);

	/* Frees of its IDs go back to it. */
	ioasid_free(1001);
	CHECK(h1.frees == 1 && h1.last_freed == 1001);
	CHECK_EQ(ioasid_set_free(&s, 1000), 0);
	CHECK(h1.frees == 2 && h1.last_freed == 1000);
	CHECK_EQ(live(), 0);

	ioasid_unregister_allocator(&ops1);
	/* Back to the default allocator. */
	CHECK_EQ(ioasid_alloc(&s, 0, 5000, NULL), 0);
	CHECK_EQ(h1.allocs, 3);
	ioasid_set_destroy(&s);
	/* Unknown and NULL ops: ignored. */
	ioasid_unregister_allocator(&ops1);
	ioasid_unregister_allocator(NULL);
	CHECK_EQ(live(), 0);
}

static void test_fallback_order(void)
{
	static struct host h1 = { .base = 1000 }, h1b = { .base = 1500 }, h2 = { .base = 2000 };
	static struct ioasid_allocator_ops ops1 = { .alloc = host_alloc, .free = host_free, .pdata = &h1 };
	/* Same functions as ops1: joins its group (kernel use_same_ops). */
	static struct ioasid_allocator_ops ops1b = { .alloc = host_alloc, .free = host_free, .pdata = &h1b };
	static struct ioasid_allocator_ops ops2 = { .alloc = host2_alloc, .free = host2_free, .pdata = &h2 };
	DECLARE_IOASID_SET(s);

	CHECK_EQ(ioasid_register_allocator(&ops1), 0);
	CHECK_EQ(ioasid_register_allocator(&ops2), 0);
	CHECK_EQ(ioasid_register_allocator(&ops1b), 0);
	CHECK_EQ(ioasid_register_allocator(&ops1b), -EEXIST);
	CHECK_EQ(ioasid_register_allocator(&ops2), -EEXIST);

	/* The first registered is active. */
	ioasid_t a = ioasid_alloc(&s, 0, 0xFFFFF, NULL);
	CHECK_EQ(a, 1000);
	/* ops1 leaves, ops1b keeps the group (and its first pdata) active. */
	ioasid_unregister_allocator(&ops1);
	CHECK_EQ(ioasid_alloc(&s, 0, 0xFFFFF, NULL), 1001);
	CHECK_EQ(h2.allocs, 0);
	/* The group's last ops leaves: the next registered takes over. */
	ioasid_unregister_allocator(&ops1b);
	ioasid_t b = ioasid_alloc(&s, 0, 0xFFFFF, NULL);
	CHECK_EQ(b, 2000);
	CHECK_EQ(h2.allocs, 1);
	/* An ID keeps going back to the allocator that gave it. */
	ioasid_free(a);
	CHECK(h1.frees == 1 && h1.last_freed == a);
	CHECK_EQ(h2.frees, 0);
	ioasid_free(b);
	CHECK(h2.frees == 1 && h2.last_freed == b);
	/* Last one gone: the default allocator, lowest free. */
	ioasid_unregister_allocator(&ops2);
	CHECK_EQ(ioasid_alloc(&s, 0, 0xFFFFF, NULL), 0);
	ioasid_set_destroy(&s);
	/* 1001 was freed by the destroy, through h1's functions. */
	CHECK(h1.frees == 2 && h1.last_freed == 1001);
	CHECK_EQ(live(), 0);
}

static void test_bad_answers(void)
{
	static ioasid_t answer;
	static struct ioasid_allocator_ops fixed = { .alloc = fixed_alloc, .free = fixed_free, .pdata = &answer };
	DECLARE_IOASID_SET(s);
	DECLARE_IOASID_SET(other);
	struct bus_type bus = { "pci", NULL };
	struct iommu_ops no_hooks;
	memset(&no_hooks, 0, sizeof(no_hooks));
	bus.iommu_ops = &no_hooks;

	CHECK_EQ(ioasid_register_allocator(&fixed), 0);
	answer = 50;
	CHECK_EQ(ioasid_alloc(&other, 0, 100, NULL), 50);
	long before = live();

	/* Out of the requested range: refused, handed back to the allocator's
	 * free (as the kernel does, SPEC 6.3), nothing recorded. */
	answer = 7;
	CHECK_EQ(ioasid_alloc(&s, 100, 200, NULL), INVALID_IOASID);
	CHECK(PTR_ERR(ioasid_find(NULL, 7, NULL)) == -ENOENT);
	CHECK_EQ(fixed_frees, 1);
	CHECK_EQ(fixed_freed[0], 7);
	/* Already live: refused and handed back, the owner keeps it. */
	answer = 50;
	CHECK_EQ(ioasid_alloc(&s, 0, 100, NULL), INVALID_IOASID);
	CHECK(ioasid_find(&other, 50, NULL) == NULL);
	CHECK(PTR_ERR(ioasid_find(&s, 50, NULL)) == -EACCES);
	CHECK_EQ(fixed_frees, 2);
	CHECK_EQ(fixed_freed[1], 50);
	/* INVALID_IOASID is the allocator's own failure: nothing to hand back. */
	answer = INVALID_IOASID;
	CHECK_EQ(ioasid_alloc(&s, 0, INVALID_IOASID, NULL), INVALID_IOASID);
	CHECK_EQ(fixed_frees, 2);
	CHECK_EQ(live(), before);

	/* The int-returning RFC form shows the error: -EIO. */
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	CHECK(p != NULL);
	ioasid_t out = 12345;
	answer = 7;
	CHECK_EQ(iommu_pasid_alloc(p, 100, 200, NULL, &out), -EIO);
	answer = 50;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 100, NULL, &out), -EIO);
	CHECK_EQ(out, 12345);
	answer = 60;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 100, NULL, &out), 0);
	CHECK_EQ(out, 60);
	iommu_pasid_exit(p);
	CHECK_EQ(live(), before);

	ioasid_set_destroy(&other);
	ioasid_set_destroy(&s);
	CHECK_EQ(live(), 0);
	/* The four refused answers (7, 50, 7, 50), then 60 and 50 freed. */
	CHECK_EQ(fixed_frees, 6);
	CHECK_EQ(fixed_freed[2], 7);
	CHECK_EQ(fixed_freed[3], 50);
	CHECK_EQ(fixed_freed[4], 60);
	CHECK_EQ(fixed_freed[5], 50);
	ioasid_unregister_allocator(&fixed);
}

int main(void)
{
	test_registration_rules();
	test_fallback_order();
	test_bad_answers();
	CHECK_EQ(live(), 0);
	return check_report("allocator");
}
