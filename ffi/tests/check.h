/* Tiny check framework of the C harnesses: counts passed and failed checks
 * (thread-safe) and prints "<harness>: N passed, M failed" at the end. */
#ifndef IOASID_TEST_CHECK_H
#define IOASID_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>

static atomic_int checks_passed;
static atomic_int checks_failed;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (cond) {                                                  \
			atomic_fetch_add(&checks_passed, 1);                 \
		} else {                                                     \
			atomic_fetch_add(&checks_failed, 1);                 \
			fprintf(stderr, "%s:%d: check failed: %s\n",         \
				__FILE__, __LINE__, #cond);                  \
		}                                                            \
	} while (0)

/* Compares two integers and prints both on failure. */
#define CHECK_EQ(actual, expected)                                           \
	do {                                                                 \
		long long check_a_ = (long long)(actual);                    \
		long long check_e_ = (long long)(expected);                  \
		if (check_a_ == check_e_) {                                  \
			atomic_fetch_add(&checks_passed, 1);                 \
		} else {                                                     \
			atomic_fetch_add(&checks_failed, 1);                 \
			fprintf(stderr,                                      \
				"%s:%d: check failed: %s == %s "             \
				"(got %lld, expected %lld)\n",               \
				__FILE__, __LINE__, #actual, #expected,      \
				check_a_, check_e_);                         \
		}                                                            \
	} while (0)

/* Prints the harness's counts; the exit status is non-zero on any failure.
 * Harnesses free everything they allocated and check the live counts; this
 * then waits for readers twice, so every deferred free has run (and a drop
 * nested in one): at exit, memory the library still holds is a leak that
 * valgrind and LeakSanitizer report, not garbage waiting for its grace
 * period (needs ioasid.h included first). */
static inline int check_report(const char *harness)
{
	ioasid_synchronize();
	ioasid_synchronize();
	int passed = atomic_load(&checks_passed);
	int failed = atomic_load(&checks_failed);
	printf("%s: %d passed, %d failed\n", harness, passed, failed);
	return failed ? 1 : 0;
}

#endif
