/* The 2018 RFC iommu_pasid_* API: init with and without vendor hooks,
 * narrowed ranges and init failures, vendor and software allocation,
 * vendor IDs freed through pasid_free, find, for_each, exit, bad input. */
#include <errno.h>
#include <string.h>

#include "ioasid.h"
#include "check.h"

static long live(void)
{
	return ioasid_space_live_count(NULL);
}

/* ---- a vendor driver with its own PASID table [500, 563] ---- */

struct vendor {
	int mode;          /* what pasid_alloc does, see below */
	ioasid_t fixed;    /* MODE_FIXED: the ID it answers */
	unsigned char used[64];
	int allocs, frees, inits;
	ioasid_t last_freed;
	struct iommu_pasid *last_pasid;
	int set_data_rc;  /* what ioasid_set_data gave inside pasid_free */
};

enum { MODE_TABLE, MODE_AGAIN, MODE_BUSY, MODE_FIXED };

static struct vendor vendor;

static int vendor_init(struct iommu_pasid *pasid)
{
	vendor.inits++;
	pasid->priv = &vendor;
	return 0;
}

static int vendor_alloc(struct iommu_pasid *pasid, ioasid_t start, ioasid_t end, ioasid_t *ioasid)
{
	struct vendor *v = pasid->priv;
	v->allocs++;
	switch (v->mode) {
	case MODE_AGAIN:
		return -EAGAIN;
	case MODE_BUSY:
		return -EBUSY;
	case MODE_FIXED:
		*ioasid = v->fixed;
		return 0;
	default:
		for (ioasid_t i = 0; i < 64; i++) {
			if (500 + i >= start && 500 + i <= end && !v->used[i]) {
				v->used[i] = 1;
				*ioasid = 500 + i;
				return 0;
			}
		}
		return -ENOSPC;
	}
}

static void vendor_free(struct iommu_pasid *pasid, ioasid_t ioasid)
{
	struct vendor *v = pasid->priv;
	v->frees++;
	v->last_freed = ioasid;
	/* Hooks run as read-side sections: waiting for readers is refused. */
	v->set_data_rc = ioasid_set_data(ioasid, NULL);
	v->last_pasid = pasid;
	if (ioasid >= 500 && ioasid < 564)
		v->used[ioasid - 500] = 0;
}

static const struct iommu_ops vendor_ops = {
	.pasid_init = vendor_init,
	.pasid_alloc = vendor_alloc,
	.pasid_free = vendor_free,
};

static const struct iommu_ops no_hooks = { 0 };

/* ---- pasid_init variants ---- */

static int narrow_init(struct iommu_pasid *pasid)
{
	pasid->min = 10;
	pasid->max = 13;
	return 0;
}

static int failing_init(struct iommu_pasid *pasid)
{
	(void)pasid;
	return -ENODEV;
}

static int empty_init(struct iommu_pasid *pasid)
{
	pasid->min = 20;
	pasid->max = 19;
	return 0;
}

static int beyond_init(struct iommu_pasid *pasid)
{
	pasid->max = INVALID_IOASID;
	return 0;
}

static void test_init(void)
{
	struct bus_type bus = { "pci", NULL };
	CHECK(iommu_pasid_init(NULL) == NULL);
	/* No IOMMU on the bus. */
	CHECK(iommu_pasid_init(&bus) == NULL);

	/* No hooks: the full 20-bit range without PASID 0. */
	bus.iommu_ops = &no_hooks;
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	CHECK(p != NULL);
	if (!p)
		return;
	CHECK(p->min == IOMMU_PASID_MIN && p->max == IOMMU_PASID_MAX);
	CHECK(p->ops == &no_hooks && p->priv == NULL);
	iommu_pasid_exit(p);

	/* Failures give NULL and leak nothing (valgrind and ASan check). */
	struct iommu_ops ops = { 0 };
	bus.iommu_ops = &ops;
	ops.pasid_init = failing_init;
	CHECK(iommu_pasid_init(&bus) == NULL);
	ops.pasid_init = empty_init;
	CHECK(iommu_pasid_init(&bus) == NULL);
	ops.pasid_init = beyond_init;
	CHECK(iommu_pasid_init(&bus) == NULL);
	CHECK_EQ(live(), 0);

	/* A vendor init that sets priv. */
	bus.iommu_ops = &vendor_ops;
	p = iommu_pasid_init(&bus);
	CHECK(p != NULL && p->priv == &vendor && vendor.inits == 1);
	iommu_pasid_exit(p);
	iommu_pasid_exit(NULL);
}

static void test_software_alloc(void)
{
	struct bus_type bus = { "pci", &no_hooks };
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	struct iommu_pasid *q = iommu_pasid_init(&bus);
	int a = 1, b = 2;
	ioasid_t id = 777, id2 = 777;

	/* Clamped to [1, 0xFFFFF]: PASID 0 is never handed out. */
	CHECK_EQ(iommu_pasid_alloc(p, 0, INVALID_IOASID, &a, &id), 0);
	CHECK_EQ(id, 1);
	/* Consumers share the global numbers. */
	CHECK_EQ(iommu_pasid_alloc(q, 0, 100, &b, &id2), 0);
	CHECK_EQ(id2, 2);
	CHECK(iommu_pasid_find(p, 1) == &a);
	CHECK(iommu_pasid_find(q, 2) == &b);
	/* Not this consumer's, or not live: NULL. */
	CHECK(iommu_pasid_find(p, 2) == NULL);
	CHECK(iommu_pasid_find(p, 3) == NULL);
	CHECK(iommu_pasid_find(NULL, 1) == NULL);
	/* The kernel-form find sees RFC IDs too. */
	CHECK(ioasid_find(&p->set, 1, NULL) == &a);
	CHECK(PTR_ERR(ioasid_find(&p->set, 2, NULL)) == -EACCES);
	/* The upper edge. */
	CHECK_EQ(iommu_pasid_alloc(p, 0xFFFFF, INVALID_IOASID, NULL, &id), 0);
	CHECK_EQ(id, 0xFFFFF);

	/* Bad input: -EINVAL and nothing changed. */
	long before = live();
	id = 777;
	CHECK_EQ(iommu_pasid_alloc(NULL, 0, 100, NULL, &id), -EINVAL);
	CHECK_EQ(iommu_pasid_alloc(p, 0, 100, NULL, NULL), -EINVAL);
	CHECK_EQ(iommu_pasid_alloc(p, 100, 50, NULL, &id), -EINVAL);
	CHECK_EQ(iommu_pasid_alloc(p, 0x100000, 0x200000, NULL, &id), -EINVAL);
	CHECK_EQ(iommu_pasid_alloc(p, 0, 0, NULL, &id), -EINVAL);
	CHECK_EQ(id, 777);
	CHECK_EQ(live(), before);
	/* A free of an ID that is not this consumer's: untouched. */
	iommu_pasid_free(p, 2);
	iommu_pasid_free(p, 12345);
	iommu_pasid_free(NULL, 1);
	CHECK(iommu_pasid_find(q, 2) == &b);
	CHECK_EQ(live(), before);

	iommu_pasid_free(p, 1);
	CHECK(iommu_pasid_find(p, 1) == NULL);
	CHECK_EQ(live(), before - 1);
	/* Exit frees everything the consumer still owns. */
	iommu_pasid_exit(p);
	CHECK_EQ(live(), 1);
	iommu_pasid_exit(q);
	CHECK_EQ(live(), 0);
}

static void test_narrowed_range(void)
{
	struct iommu_ops ops = { .pasid_init = narrow_init };
	struct bus_type bus = { "pci", &ops };
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	ioasid_t id;

	CHECK(p != NULL && p->min == 10 && p->max == 13);
	for (ioasid_t want = 10; want <= 13; want++) {
		CHECK_EQ(iommu_pasid_alloc(p, 0, 0xFFFFF, NULL, &id), 0);
		CHECK_EQ(id, want);
	}
	/* Full: -ENOSPC (never the RFC's blanket -ENODEV), nothing changed. */
	long before = live();
	CHECK_EQ(iommu_pasid_alloc(p, 0, 0xFFFFF, NULL, &id), -ENOSPC);
	CHECK_EQ(live(), before);
	/* A range outside [10, 13]. */
	CHECK_EQ(iommu_pasid_alloc(p, 14, 100, NULL, &id), -EINVAL);
	CHECK_EQ(iommu_pasid_alloc(p, 1, 9, NULL, &id), -EINVAL);
	iommu_pasid_free(p, 12);
	CHECK_EQ(iommu_pasid_alloc(p, 0, 0xFFFFF, NULL, &id), 0);
	CHECK_EQ(id, 12);
	iommu_pasid_exit(p);
	CHECK_EQ(live(), 0);
}

/* for_each: records visits, stops when it sees `stop_at`. */
struct walk {
	ioasid_t ids[16];
	void *data[16];
	int n;
	ioasid_t stop_at;
};

static int record(ioasid_t id, void *private_data, void *arg)
{
	struct walk *w = arg;
	if (w->n < 16) {
		w->ids[w->n] = id;
		w->data[w->n] = private_data;
	}
	w->n++;
	return id == w->stop_at ? 42 : 0;
}

static void test_vendor_alloc(void)
{
	struct bus_type bus = { "pci", &vendor_ops };
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	struct iommu_pasid *other = iommu_pasid_init(&bus);
	int x = 1, y = 2;
	ioasid_t id = 0;

	memset(&vendor, 0, sizeof(vendor));
	p->priv = &vendor;
	other->priv = &vendor;

	/* 0: the vendor's ID is recorded. */
	vendor.mode = MODE_TABLE;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 0xFFFFF, &x, &id), 0);
	CHECK_EQ(id, 500);
	CHECK(iommu_pasid_find(p, 500) == &x);
	CHECK(ioasid_find(NULL, 500, NULL) == &x);
	CHECK_EQ(iommu_pasid_alloc(p, 1, 0xFFFFF, &y, &id), 0);
	CHECK_EQ(id, 501);
	/* The vendor gets the clamped range. */
	CHECK_EQ(iommu_pasid_alloc(p, 510, 510, NULL, &id), 0);
	CHECK_EQ(id, 510);

	/* -EAGAIN: software allocation, lowest free in range. */
	vendor.mode = MODE_AGAIN;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 0xFFFFF, &y, &id), 0);
	CHECK_EQ(id, 1);
	/* Another error: returned as it is, nothing recorded. */
	vendor.mode = MODE_BUSY;
	long before = live();
	CHECK_EQ(iommu_pasid_alloc(p, 1, 0xFFFFF, NULL, &id), -EBUSY);
	CHECK_EQ(live(), before);
	/* A bad vendor ID: out of range, or already live. -EIO. */
	vendor.mode = MODE_FIXED;
	vendor.fixed = 5000;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 4000, NULL, &id), -EIO);
	vendor.fixed = 500;
	CHECK_EQ(iommu_pasid_alloc(other, 1, 4000, NULL, &id), -EIO);
	CHECK(iommu_pasid_find(p, 500) == &x);
	CHECK_EQ(live(), before);

	/* for_each: ascending, the data, an early stop returns its value. */
	struct walk w = { .stop_at = INVALID_IOASID };
	CHECK_EQ(iommu_pasid_for_each(p, record, &w), 0);
	CHECK_EQ(w.n, 4);
	CHECK(w.ids[0] == 1 && w.ids[1] == 500 && w.ids[2] == 501 && w.ids[3] == 510);
	CHECK(w.data[0] == &y && w.data[1] == &x && w.data[2] == &y && w.data[3] == NULL);
	struct walk stop = { .stop_at = 500 };
	CHECK_EQ(iommu_pasid_for_each(p, record, &stop), 42);
	CHECK_EQ(stop.n, 2);
	struct walk none = { .stop_at = INVALID_IOASID };
	CHECK_EQ(iommu_pasid_for_each(other, record, &none), 0);
	CHECK_EQ(none.n, 0);
	CHECK_EQ(iommu_pasid_for_each(NULL, record, &w), -EINVAL);
	CHECK_EQ(iommu_pasid_for_each(p, NULL, &w), -EINVAL);

	/* Vendor IDs go back through pasid_free; software IDs do not. */
	vendor.frees = 0;
	iommu_pasid_free(other, 501);  /* not other's: untouched */
	CHECK(vendor.frees == 0 && iommu_pasid_find(p, 501) == &y);
	iommu_pasid_free(p, 501);
	CHECK(vendor.frees == 1 && vendor.last_freed == 501 && vendor.last_pasid == p);
	CHECK_EQ(vendor.set_data_rc, -EDEADLK);
	iommu_pasid_free(p, 1);
	CHECK_EQ(vendor.frees, 1);
	/* ...also when freed with the kernel form. */
	ioasid_free(510);
	CHECK(vendor.frees == 2 && vendor.last_freed == 510);
	/* set_data keeps the vendor tag. */
	CHECK_EQ(ioasid_set_data(500, &y), 0);
	CHECK(iommu_pasid_find(p, 500) == &y);

	/* Exit frees what is left, vendor IDs through pasid_free. */
	vendor.mode = MODE_AGAIN;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 0xFFFFF, NULL, &id), 0);
	CHECK_EQ(live(), 2);
	iommu_pasid_exit(p);
	CHECK(vendor.frees == 3 && vendor.last_freed == 500);
	CHECK_EQ(live(), 0);
	iommu_pasid_exit(other);
	CHECK_EQ(vendor.frees, 3);
	CHECK_EQ(live(), 0);
}

/* A consumer exits while one of its vendor IDs is still referenced: the ID
 * stays FREE_PENDING (found, not got, not allocatable), and its last put
 * hands it back through the exited consumer's pasid_free, once, with the
 * consumer still intact (valgrind and ASan see any use after free). */
static void test_referenced_vendor_id_outlives_exit(void)
{
	struct bus_type bus = { "pci", &vendor_ops };
	struct iommu_pasid *p = iommu_pasid_init(&bus);
	int x = 7;
	ioasid_t id = 0;

	memset(&vendor, 0, sizeof(vendor));
	p->priv = &vendor;
	vendor.mode = MODE_TABLE;
	CHECK_EQ(iommu_pasid_alloc(p, 1, 0xFFFFF, &x, &id), 0);
	CHECK_EQ(id, 500);
	ioasid_get(500);
	iommu_pasid_exit(p);
	CHECK_EQ(vendor.frees, 0);
	CHECK(ioasid_find(NULL, 500, NULL) == &x);
	CHECK_EQ(ioasid_get_checked(NULL, 500), -ENOENT);
	CHECK_EQ(ioasid_alloc(NULL, 500, 500, NULL), INVALID_IOASID);
	CHECK_EQ(live(), 1);
	CHECK(ioasid_put(500));
	CHECK(vendor.frees == 1 && vendor.last_freed == 500);
	CHECK(vendor.used[0] == 0);
	CHECK_EQ(live(), 0);
	CHECK(!ioasid_put(500));
	CHECK_EQ(vendor.frees, 1);
	/* The vendor may hand the number out again, to a new consumer. */
	struct iommu_pasid *q = iommu_pasid_init(&bus);
	q->priv = &vendor;
	CHECK_EQ(iommu_pasid_alloc(q, 1, 0xFFFFF, &x, &id), 0);
	CHECK_EQ(id, 500);
	iommu_pasid_exit(q);
	CHECK_EQ(vendor.frees, 2);
	CHECK_EQ(live(), 0);
}

int main(void)
{
	test_init();
	test_software_alloc();
	test_narrowed_range();
	test_vendor_alloc();
	test_referenced_vendor_id_outlives_exit();
	CHECK_EQ(live(), 0);
	return check_report("rfc");
}
