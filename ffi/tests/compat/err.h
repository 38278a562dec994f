/* A small kernel-compat <linux/err.h>, as user-space ports of kernel code
 * carry one: the same helpers ioasid.h defines, written the kernel's way. */
#ifndef COMPAT_LINUX_ERR_H
#define COMPAT_LINUX_ERR_H

#include <stdbool.h>

#define MAX_ERRNO 4095
#define IS_ERR_VALUE(x) ((unsigned long)(void *)(x) >= (unsigned long)-MAX_ERRNO)

static inline void *ERR_PTR(long error)
{
	return (void *)error;
}

static inline long PTR_ERR(const void *ptr)
{
	return (long)ptr;
}

static inline bool IS_ERR(const void *ptr)
{
	return IS_ERR_VALUE((unsigned long)ptr);
}

static inline bool IS_ERR_OR_NULL(const void *ptr)
{
	return !ptr || IS_ERR_VALUE((unsigned long)ptr);
}

#endif
