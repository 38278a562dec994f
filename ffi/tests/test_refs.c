/* Reference counts (SPEC 6.2: ioasid_get/ioasid_put, the checked forms,
 * FREE_PENDING, set teardown) and the errno-returning forms of SPEC 6.7
 * (ioasid_alloc_id, ioasid_set_attach_data): every error, NULL everywhere,
 * and the v5.12 iommu-sva-lib calling pattern. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdbool.h>

#include "ioasid.h"
#include "check.h"

static long live(void)
{
	return ioasid_space_live_count(NULL);
}

static void test_get_put_and_free_pending(void)
{
	DECLARE_IOASID_SET(drv);
	int data = 1;
	ioasid_t id = ioasid_alloc(&drv, 1, 100, &data);

	CHECK(id != INVALID_IOASID);
	ioasid_get(id);
	ioasid_get(id);
	CHECK(!ioasid_put(id));
	/* Free with a reference left: FREE_PENDING. */
	ioasid_free(id);
	CHECK(ioasid_find(NULL, id, NULL) == &data);
	CHECK_EQ(ioasid_get_checked(NULL, id), -ENOENT);
	ioasid_get(id); /* a no-op: no new references */
	CHECK_EQ(live(), 1);
	CHECK_EQ(ioasid_alloc(&drv, id, id, NULL), INVALID_IOASID);
	ioasid_free(id); /* freed once only */
	CHECK(ioasid_find(NULL, id, NULL) == &data);
	CHECK(ioasid_put(id)); /* the last reference: released */
	CHECK(PTR_ERR(ioasid_find(NULL, id, NULL)) == -ENOENT);
	CHECK_EQ(live(), 0);
	CHECK(!ioasid_put(id));
	ioasid_get(id);
	CHECK_EQ(live(), 0);
	/* A put of a never-got ID drops the allocation's reference. */
	id = ioasid_alloc(&drv, 1, 100, NULL);
	CHECK(ioasid_put(id));
	CHECK_EQ(live(), 0);
	/* Not live, out of range, INVALID_IOASID: ignored. */
	ioasid_get(INVALID_IOASID);
	CHECK(!ioasid_put(INVALID_IOASID));
	CHECK(!ioasid_put(12345));
	ioasid_set_destroy(&drv);
}

static void test_checked_forms(void)
{
	DECLARE_IOASID_SET(a);
	DECLARE_IOASID_SET(b);
	DECLARE_IOASID_SET(never);
	ioasid_t id = ioasid_alloc(&a, 1, 100, NULL);

	CHECK_EQ(ioasid_get_checked(&a, id), 0);
	CHECK_EQ(ioasid_get_checked(NULL, id), 0);
	CHECK_EQ(ioasid_get_checked(&b, id), -EACCES);
	CHECK_EQ(ioasid_put_checked(&b, id), -EACCES);
	CHECK_EQ(ioasid_get_checked(&never, id), -EACCES);
	CHECK_EQ(ioasid_get_checked(&never, 999), -ENOENT);
	CHECK_EQ(ioasid_get_checked(&a, 999), -ENOENT);
	CHECK_EQ(ioasid_get_checked(NULL, INVALID_IOASID), -ENOENT);
	CHECK_EQ(ioasid_put_checked(&a, 999), -ENOENT);
	CHECK_EQ(ioasid_put_checked(NULL, 999), -ENOENT);
	CHECK_EQ(ioasid_put_checked(&a, id), 0);
	CHECK_EQ(ioasid_put_checked(NULL, id), 0);
	CHECK_EQ(ioasid_put_checked(&a, id), 1);
	CHECK_EQ(ioasid_put_checked(&a, id), -ENOENT);
	CHECK_EQ(live(), 0);
	ioasid_set_destroy(&a);
	ioasid_set_destroy(&b);
	ioasid_set_destroy(&never);
}

static void test_teardown_leaves_referenced_ids_pending(void)
{
	DECLARE_IOASID_SET(vm);
	DECLARE_IOASID_SET(next);
	int data = 3;
	ioasid_t held = ioasid_alloc(&vm, 1, 100, &data);
	ioasid_t loose = ioasid_alloc(&vm, 1, 100, NULL);

	CHECK_EQ(ioasid_get_checked(&vm, held), 0);
	ioasid_set_destroy(&vm);
	CHECK(PTR_ERR(ioasid_find(NULL, loose, NULL)) == -ENOENT);
	CHECK(ioasid_find(NULL, held, NULL) == &data);
	CHECK_EQ(ioasid_get_checked(NULL, held), -ENOENT);
	/* Detached: no set owns it, not even one made afterwards. */
	CHECK(ioasid_alloc(&next, 1000, 1000, NULL) == 1000);
	CHECK_EQ(ioasid_put_checked(&next, held), -EACCES);
	CHECK_EQ(ioasid_put_checked(NULL, held), 1);
	CHECK_EQ(live(), 1);
	ioasid_set_destroy(&next);
	CHECK_EQ(live(), 0);
}

static int data_a = 1, data_b = 2;

static void test_alloc_id(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 1, IOASID_POLICY_LOWEST);
	DECLARE_IOASID_SET(s);
	DECLARE_IOASID_SET(q);
	ioasid_t id = 77;

	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	CHECK_EQ(ioasid_set_init(&q, sp, 1), 0);
	CHECK_EQ(ioasid_alloc_id(&s, 0, 1, &data_a, NULL), -EINVAL);
	CHECK_EQ(ioasid_alloc_id(&s, 1, 0, &data_a, &id), -EINVAL);
	CHECK_EQ(id, 77);
	CHECK_EQ(ioasid_alloc_id(&s, 5, 9, &data_a, &id), -EINVAL);
	CHECK_EQ(ioasid_alloc_id(&s, 0, 1, &data_a, &id), 0);
	CHECK_EQ(id, 0);
	CHECK_EQ(ioasid_alloc_id(&q, 0, 1, &data_b, &id), 0);
	CHECK_EQ(id, 1);
	id = 77;
	CHECK_EQ(ioasid_alloc_id(&q, 0, 1, NULL, &id), -EDQUOT);
	CHECK_EQ(ioasid_alloc_id(&s, 0, 1, NULL, &id), -ENOSPC);
	CHECK_EQ(id, 77);
	CHECK(ioasid_find(&s, 0, NULL) == &data_a);
	/* NULL set: the anonymous set of the global space. */
	CHECK_EQ(ioasid_alloc_id(NULL, 5, 9, NULL, &id), 0);
	CHECK_EQ(id, 5);
	ioasid_free(5);
	CHECK_EQ(live(), 0);
	ioasid_set_destroy(&s);
	ioasid_set_destroy(&q);
	ioasid_space_destroy(sp);
}

static void test_set_attach_data(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 9, IOASID_POLICY_LOWEST);
	DECLARE_IOASID_SET(s);
	DECLARE_IOASID_SET(other);
	DECLARE_IOASID_SET(never);
	ioasid_t id;

	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	CHECK_EQ(ioasid_set_init(&other, sp, 0), 0);
	CHECK_EQ(ioasid_alloc_id(&s, 0, 9, &data_a, &id), 0);
	CHECK_EQ(ioasid_set_attach_data(NULL, id, &data_b), -EINVAL);
	CHECK_EQ(ioasid_set_attach_data(&other, id, &data_b), -EACCES);
	CHECK_EQ(ioasid_set_attach_data(&s, 9, &data_b), -ENOENT);
	CHECK_EQ(ioasid_set_attach_data(&never, 9, &data_b), -ENOENT);
	CHECK(ioasid_find(&s, id, NULL) == &data_a);
	CHECK_EQ(ioasid_set_attach_data(&s, id, &data_b), 0);
	CHECK(ioasid_find(&s, id, NULL) == &data_b);
	CHECK_EQ(ioasid_set_attach_data(&s, id, NULL), 0);
	CHECK(ioasid_find(&s, id, NULL) == NULL);
	/* Inside a read-side section it would wait for itself. */
	ioasid_read_lock();
	CHECK_EQ(ioasid_set_attach_data(&s, id, &data_a), -EDEADLK);
	ioasid_read_unlock();
	CHECK(ioasid_find(&s, id, NULL) == NULL);
	ioasid_set_destroy(&s);
	ioasid_set_destroy(&other);
	ioasid_set_destroy(&never);
	ioasid_space_destroy(sp);
}

/* iommu-sva-lib.c of v5.12: alloc on first bind, ioasid_get on a rebind of
 * the same mm, find with a getter, ioasid_put on each unbind. */
struct mm {
	int users;
	ioasid_t pasid;
};

static DECLARE_IOASID_SET(iommu_sva_pasid);

static bool mm_getter(void *data)
{
	return ((struct mm *)data)->users > 0;
}

static int sva_bind(struct mm *mm)
{
	if (mm->pasid != INVALID_IOASID) {
		ioasid_get(mm->pasid);
		return 0;
	}
	mm->pasid = ioasid_alloc(&iommu_sva_pasid, 1, 0xFFFFF, mm);
	return mm->pasid == INVALID_IOASID ? -ENOSPC : 0;
}

static void sva_unbind(struct mm *mm)
{
	if (ioasid_put(mm->pasid))
		mm->pasid = INVALID_IOASID;
}

static void test_iommu_sva_lib_pattern(void)
{
	struct mm mm = { 1, INVALID_IOASID };

	CHECK_EQ(sva_bind(&mm), 0);
	ioasid_t pasid = mm.pasid;
	CHECK_EQ(sva_bind(&mm), 0); /* a second device binds the same mm */
	CHECK_EQ(mm.pasid, pasid);
	CHECK(ioasid_find(&iommu_sva_pasid, pasid, mm_getter) == &mm);
	sva_unbind(&mm);
	CHECK_EQ(mm.pasid, pasid);
	CHECK(ioasid_find(NULL, pasid, NULL) == &mm);
	sva_unbind(&mm);
	CHECK_EQ(mm.pasid, INVALID_IOASID);
	CHECK(PTR_ERR(ioasid_find(NULL, pasid, NULL)) == -ENOENT);
	CHECK_EQ(live(), 0);
}

int main(void)
{
	test_get_put_and_free_pending();
	test_checked_forms();
	test_teardown_leaves_referenced_ids_pending();
	test_alloc_id();
	test_set_attach_data();
	test_iommu_sva_lib_pattern();
	return check_report("refs");
}
