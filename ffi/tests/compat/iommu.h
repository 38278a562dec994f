/* A small kernel-compat <linux/iommu.h>: its own struct iommu_ops (the PASID
 * hooks, in ioasid.h's layout) and struct bus_type. */
#ifndef COMPAT_LINUX_IOMMU_H
#define COMPAT_LINUX_IOMMU_H

typedef unsigned int ioasid_t;
struct iommu_pasid;

struct iommu_ops {
	int (*pasid_init)(struct iommu_pasid *pasid);
	int (*pasid_alloc)(struct iommu_pasid *pasid, ioasid_t start, ioasid_t end,
			   ioasid_t *ioasid);
	void (*pasid_free)(struct iommu_pasid *pasid, ioasid_t ioasid);
};

struct bus_type {
	const char *name;
	const struct iommu_ops *iommu_ops;
};

#endif
