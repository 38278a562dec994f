/* The other order of test_compat.c: ioasid.h first (with the opt-out
 * macros), then the kernel-compat headers. */
#define IOASID_NO_ERR_HELPERS
#define IOASID_NO_IOMMU_TYPES
#define IOASID_NO_NOTIFIER_BLOCK
#include "ioasid.h"
#include "compat/err.h"
#include "compat/list.h"
#include "compat/iommu.h"
#include "compat/notifier.h"

int compat_after(void);

/* 0 when the helpers of both headers agree on a real lookup. */
static DECLARE_IOASID_SET(set);

int compat_after(void)
{
	void *missing = ioasid_find(&set, 12345, NULL);
	if (!IS_ERR(missing) || PTR_ERR(missing) != -ENOENT || !IS_ERR_OR_NULL(missing))
		return 1;
	if (!pasid_valid(12345) || pasid_valid(INVALID_IOASID))
		return 2;
	struct list_head head;
	INIT_LIST_HEAD(&head);
	if (head.next != &head)
		return 3;
	struct notifier_block nb = { 0 };
	if (ioasid_register_notifier(NULL, &nb) != -EINVAL) /* NULL notifier_call */
		return 4;
	return NOTIFY_STOP_MASK == 0x8000 ? 0 : 5;
}
