/* Kernel code compiles unchanged (SPEC 6.1): this file includes its own
 * kernel-compat err.h, list.h, iommu.h and notifier.h BEFORE ioasid.h, with the opt-out
 * macros; compat_after.c includes ioasid.h first and the compat headers
 * AFTER it. Both build with -Wall -Wextra -Werror -pedantic. Neither
 * includes <errno.h>: ioasid.h does. */
#define IOASID_NO_ERR_HELPERS
#define IOASID_NO_IOMMU_TYPES
#define IOASID_NO_NOTIFIER_BLOCK
#include <stddef.h>

#include "compat/err.h"
#include "compat/list.h"
#include "compat/iommu.h"
#include "compat/notifier.h"
#include "ioasid.h"
#include "check.h"

int compat_after(void);

/* The ops' list field has the layout of struct list_head. */
_Static_assert(sizeof(((struct ioasid_allocator_ops *)0)->list) == sizeof(struct list_head),
	       "list field size");
_Static_assert(_Alignof(struct ioasid_list_head) == _Alignof(struct list_head),
	       "list field alignment");
_Static_assert(offsetof(struct ioasid_list_head, next) == offsetof(struct list_head, next),
	       "list next");
_Static_assert(offsetof(struct ioasid_list_head, prev) == offsetof(struct list_head, prev),
	       "list prev");

static ioasid_t host_next = 500;
static ioasid_t host_alloc(ioasid_t min, ioasid_t max, void *pdata)
{
	(void)pdata;
	return host_next >= min && host_next <= max ? host_next++ : INVALID_IOASID;
}

static void host_free(ioasid_t id, void *pdata)
{
	(void)id;
	(void)pdata;
}

static DECLARE_IOASID_SET(set);

static int frees_seen;
static int on_event(struct notifier_block *nb, unsigned long action, void *data)
{
	struct ioasid_nb_args *args = data;
	(void)nb;
	if (action == IOASID_NOTIFY_FREE && args->set == &set)
		frees_seen++;
	return NOTIFY_OK;
}

int main(void)
{
	int token;

	/* Kernel code may initialise the ops' list with its own list.h. */
	struct ioasid_allocator_ops ops = { .alloc = host_alloc, .free = host_free };
	INIT_LIST_HEAD((struct list_head *)&ops.list);
	CHECK_EQ(ioasid_register_allocator(&ops), 0);

	ioasid_t id = ioasid_alloc(&set, 1, 1000, &token);
	CHECK_EQ(id, 500);
	CHECK(pasid_valid(id));
	CHECK(!pasid_valid(INVALID_IOASID));
	CHECK(ioasid_find(&set, id, NULL) == &token);
	/* The compat err.h's helpers and <errno.h>'s names, via ioasid.h. */
	CHECK(IS_ERR(ioasid_find(&set, id + 1, NULL)));
	CHECK_EQ(PTR_ERR(ioasid_find(&set, id + 1, NULL)), -ENOENT);
	CHECK_EQ(ioasid_set_data(id + 1, NULL), -ENOENT);
	/* The compat notifier.h's block works with the notifier functions. */
	struct notifier_block nb = { .notifier_call = on_event, .priority = 1 };
	CHECK_EQ(ioasid_register_notifier(&set, &nb), 0);
	ioasid_free(id);
	CHECK_EQ(frees_seen, 1);
	ioasid_unregister_notifier(&set, &nb);

	/* The compat iommu.h's types work with the RFC functions. */
	static const struct iommu_ops iommu = { 0 };
	struct bus_type bus = { .name = "pci", .iommu_ops = &iommu };
	struct iommu_pasid *consumer = iommu_pasid_init(&bus);
	CHECK(consumer != NULL);
	iommu_pasid_exit(consumer);

	CHECK_EQ(compat_after(), 0);
	ioasid_unregister_allocator(&ops);
	CHECK_EQ(ioasid_space_live_count(NULL), 0);
	return check_report("compat");
}
