/* Snapshot and restore (ioasid_space_save / ioasid_space_restore): round
 * trips under every policy (the restored space answers the same calls as
 * the original, and saves to the same bytes), the size protocol, every
 * error and NULL, truncated buffers at every length and every flipped bit
 * (-EINVAL, nothing created, the callback never called), and the set
 * functions that go with it (ioasid_set_number, ioasid_set_release). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ioasid.h"
#include "check.h"

#define MAX_SETS 8

/* The contexts private pointers point to: one array before migration, one
 * after; the callback maps an address in the first to the same index in
 * the second. */
static int before[64];
static int after[64];
static int map_calls;

static int map_to_after(ioasid_t ioasid, unsigned int set, uint64_t saved, void **private_,
			void *arg)
{
	(void)ioasid;
	(void)set;
	(void)arg;
	map_calls++;
	uintptr_t base = (uintptr_t)before;
	if (saved == 0) {
		*private_ = NULL;
		return 0;
	}
	if (saved < base || saved >= base + sizeof(before))
		return -EFAULT;
	*private_ = &after[(saved - base) / sizeof(int)];
	return 0;
}

static int fail_with(ioasid_t ioasid, unsigned int set, uint64_t saved, void **private_, void *arg)
{
	(void)ioasid;
	(void)set;
	(void)saved;
	(void)private_;
	map_calls++;
	return *(int *)arg;
}

/* Records every (id, set number) the callback sees, keeps the value. */
struct seen {
	unsigned int n;
	ioasid_t ids[64];
	unsigned int sets[64];
};

static int record(ioasid_t ioasid, unsigned int set, uint64_t saved, void **private_, void *arg)
{
	struct seen *seen = arg;
	seen->ids[seen->n] = ioasid;
	seen->sets[seen->n] = set;
	seen->n++;
	*private_ = (void *)(uintptr_t)saved;
	return 0;
}

/* save into a malloc'd buffer of the exact size; *len gets it. */
static unsigned char *save(struct ioasid_space *space, size_t *len)
{
	*len = 0;
	CHECK_EQ(ioasid_space_save(space, NULL, len), 0);
	unsigned char *buf = malloc(*len);
	size_t room = *len;
	CHECK_EQ(ioasid_space_save(space, buf, &room), 0);
	CHECK_EQ(room, *len);
	return buf;
}

static void test_round_trip(void)
{
	struct ioasid_space *sp = ioasid_space_create(1, 0xFFFFF, IOASID_POLICY_CYCLIC);
	struct ioasid_set a, b, c;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	CHECK_EQ(ioasid_set_init(&a, sp, 0), 0);
	CHECK_EQ(ioasid_set_init(&b, sp, 3), 0);
	CHECK_EQ(ioasid_set_init(&c, sp, 0), 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ioasid_alloc(&a, 1, 0xFFFFF, &before[i]), 1 + i);
	CHECK_EQ(ioasid_alloc(&b, 1, 0xFFFFF, &before[10]), 5);
	CHECK_EQ(ioasid_alloc(&b, 1, 0xFFFFF, NULL), 6);
	CHECK_EQ(ioasid_get_checked(&b, 5), 0);
	CHECK_EQ(ioasid_get_checked(&b, 6), 0);
	CHECK_EQ(ioasid_set_free(&b, 6), 0); /* FREE_PENDING, in b */
	CHECK_EQ(ioasid_alloc(&c, 1, 0xFFFFF, &before[20]), 7);
	CHECK_EQ(ioasid_get_checked(&c, 7), 0);
	ioasid_set_destroy(&c); /* 7: FREE_PENDING, detached */
	CHECK_EQ(ioasid_set_free(&a, 2), 0);
	CHECK_EQ(ioasid_space_live_count(sp), 6);

	/* The size protocol: a query, too little room, then exactly enough. */
	size_t len = 0;
	CHECK_EQ(ioasid_space_save(sp, NULL, &len), 0);
	CHECK(len > 64);
	unsigned char *buf = malloc(len);
	size_t room = len - 1;
	memset(buf, 0xAB, len);
	CHECK_EQ(ioasid_space_save(sp, buf, &room), -ENOSPC);
	CHECK_EQ(room, len);
	CHECK_EQ(buf[0], 0xAB);
	room = len + 100;
	CHECK_EQ(ioasid_space_save(sp, buf, &room), 0);
	CHECK_EQ(room, len);
	CHECK(memcmp(buf, "IOASNAP", 8) == 0);

	/* Too little room for the sets: -ENOSPC says how much, creates nothing. */
	struct ioasid_space *copy = (struct ioasid_space *)&copy;
	struct ioasid_set *sets[MAX_SETS] = { 0 };
	unsigned int nr = 1;
	map_calls = 0;
	CHECK_EQ(ioasid_space_restore(buf, len, map_to_after, NULL, &copy, sets, &nr), -ENOSPC);
	CHECK_EQ(nr, 2);
	CHECK(copy == (struct ioasid_space *)&copy && sets[0] == NULL);
	nr = 5;
	CHECK_EQ(ioasid_space_restore(buf, len, map_to_after, NULL, &copy, NULL, &nr), -ENOSPC);
	CHECK_EQ(nr, 2);
	CHECK_EQ(map_calls, 0);

	nr = MAX_SETS;
	CHECK_EQ(ioasid_space_restore(buf, len, map_to_after, NULL, &copy, sets, &nr), 0);
	CHECK_EQ(nr, 2);
	CHECK_EQ(map_calls, 6);
	CHECK(copy != NULL && copy != (struct ioasid_space *)&copy);
	CHECK_EQ(ioasid_space_live_count(copy), 6);
	/* Sets in saved order, with their numbers. */
	CHECK_EQ(ioasid_set_number(sets[0]), ioasid_set_number(&a));
	CHECK_EQ(ioasid_set_number(sets[1]), ioasid_set_number(&b));
	CHECK(ioasid_set_number(&a) >= 1);
	/* Owners and mapped data. */
	CHECK(ioasid_find(sets[0], 1, NULL) == &after[0]);
	CHECK(ioasid_find(sets[0], 4, NULL) == &after[3]);
	CHECK(ioasid_find(sets[1], 5, NULL) == &after[10]);
	CHECK_EQ(PTR_ERR(ioasid_find(sets[1], 1, NULL)), -EACCES);
	CHECK_EQ(PTR_ERR(ioasid_find(sets[0], 2, NULL)), -ENOENT);
	/* FREE_PENDING ones: found, not got; the detached one is no set's. */
	CHECK(ioasid_find(sets[1], 6, NULL) == NULL);
	CHECK_EQ(ioasid_get_checked(sets[1], 6), -ENOENT);
	CHECK_EQ(PTR_ERR(ioasid_find(sets[1], 7, NULL)), -EACCES);
	CHECK_EQ(PTR_ERR(ioasid_find(sets[0], 7, NULL)), -EACCES);
	/* Cyclic goes on after 7 on both; the freed 2 is not reused yet. */
	CHECK_EQ(ioasid_alloc(&a, 1, 0xFFFFF, NULL), 8);
	CHECK_EQ(ioasid_alloc(sets[0], 1, 0xFFFFF, NULL), 8);
	/* b: quota 3, two held (5, and 6 FREE_PENDING). */
	ioasid_t id = 0;
	CHECK_EQ(ioasid_alloc_id(sets[1], 1, 0xFFFFF, NULL, &id), 0);
	CHECK_EQ(id, 9);
	CHECK_EQ(ioasid_alloc_id(sets[1], 1, 0xFFFFF, NULL, &id), -EDQUOT);
	/* References: 5 has two, 6 and 7 one each. */
	CHECK_EQ(ioasid_put_checked(sets[1], 5), 0);
	CHECK_EQ(ioasid_put_checked(sets[1], 5), 1);
	CHECK_EQ(ioasid_put_checked(sets[1], 6), 1);
	CHECK_EQ(ioasid_put_checked(NULL, 7), -ENOENT); /* NULL set: global space */
	CHECK_EQ(ioasid_space_live_count(copy), 6);

	/* The restored sets go; 7 stays FREE_PENDING until the space goes. */
	ioasid_set_release(sets[0]);
	ioasid_set_release(sets[0]); /* released already: ignored */
	ioasid_set_release(sets[1]);
	CHECK_EQ(ioasid_space_live_count(copy), 1);
	ioasid_space_destroy(copy);

	/* The original: unchanged by all this. */
	CHECK_EQ(ioasid_space_live_count(sp), 7);
	CHECK_EQ(ioasid_put_checked(&b, 6), 1);
	CHECK_EQ(ioasid_put_checked(&b, 5), 0);
	ioasid_set_destroy(&a);
	ioasid_set_destroy(&b);
	CHECK_EQ(ioasid_space_live_count(sp), 1); /* 7, referenced, detached */
	ioasid_space_destroy(sp);
	free(buf);
}

/* A restored space saves to the very same bytes; the callback sees each
 * ID with its set's number (0 for a detached one). */
static void test_same_bytes_and_numbers(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 100, IOASID_POLICY_LOWEST);
	struct ioasid_set s1, s2;
	memset(&s1, 0, sizeof(s1));
	memset(&s2, 0, sizeof(s2));
	CHECK_EQ(ioasid_set_init(&s1, sp, 0), 0);
	CHECK_EQ(ioasid_set_init(&s2, sp, 10), 0);
	CHECK_EQ(ioasid_alloc(&s2, 0, 100, (void *)(uintptr_t)0x1234), 0);
	CHECK_EQ(ioasid_alloc(&s1, 0, 100, NULL), 1);
	CHECK_EQ(ioasid_alloc(&s2, 100, 100, (void *)(uintptr_t)0xFFFFFFFFFFF0ull), 100);
	size_t len;
	unsigned char *buf = save(sp, &len);

	struct seen seen = { 0 };
	struct ioasid_space *copy = NULL;
	struct ioasid_set *sets[MAX_SETS];
	unsigned int nr = MAX_SETS;
	CHECK_EQ(ioasid_space_restore(buf, len, record, &seen, &copy, sets, &nr), 0);
	CHECK_EQ(seen.n, 3);
	CHECK_EQ(seen.ids[0], 0);
	CHECK_EQ(seen.sets[0], ioasid_set_number(&s2));
	CHECK_EQ(seen.ids[1], 1);
	CHECK_EQ(seen.sets[1], ioasid_set_number(&s1));
	CHECK_EQ(seen.ids[2], 100);
	CHECK(ioasid_find(sets[1], 100, NULL) == (void *)(uintptr_t)0xFFFFFFFFFFF0ull);
	size_t len2;
	unsigned char *buf2 = save(copy, &len2);
	CHECK_EQ(len2, len);
	CHECK(memcmp(buf, buf2, len) == 0);
	free(buf2);
	/* A NULL callback keeps the saved values as the pointers. */
	struct ioasid_space *copy2 = NULL;
	struct ioasid_set *sets2[MAX_SETS];
	nr = MAX_SETS;
	CHECK_EQ(ioasid_space_restore(buf, len, NULL, NULL, &copy2, sets2, &nr), 0);
	CHECK(ioasid_find(sets2[1], 0, NULL) == (void *)(uintptr_t)0x1234);
	CHECK(ioasid_find(sets2[0], 1, NULL) == NULL);
	for (unsigned int i = 0; i < nr; i++) {
		ioasid_set_release(sets[i]);
		ioasid_set_release(sets2[i]);
	}
	ioasid_space_destroy(copy);
	ioasid_space_destroy(copy2);
	ioasid_set_destroy(&s1);
	ioasid_set_destroy(&s2);
	ioasid_space_destroy(sp);
	free(buf);
}

/* A tiny xorshift, so both runs of a continuation make the same calls. */
static uint64_t next_rand(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* Random calls on sets[0..n) of one space; the answers go to out[]. */
static void churn(struct ioasid_set **sets, unsigned int n, uint64_t seed, long *out, int steps)
{
	uint64_t r = seed;
	for (int i = 0; i < steps; i++) {
		struct ioasid_set *set = sets[next_rand(&r) % n];
		ioasid_t x = (ioasid_t)(next_rand(&r) % 70);
		ioasid_t y = (ioasid_t)(next_rand(&r) % 70);
		ioasid_t id = INVALID_IOASID;
		switch (next_rand(&r) % 5) {
		case 0:
		case 1:
			out[i] = ioasid_alloc_id(set, x, y, &before[x % 64], &id);
			out[i] = out[i] * 1000 + (long)id;
			break;
		case 2:
			out[i] = ioasid_set_free(set, x);
			break;
		case 3:
			out[i] = ioasid_get_checked(set, x);
			break;
		default:
			out[i] = ioasid_put_checked(set, x);
			break;
		}
	}
}

static void test_every_policy_continues_alike(void)
{
	for (unsigned int policy = 0; policy < 3; policy++) {
		struct ioasid_space *sp = ioasid_space_create(3, 66, policy);
		struct ioasid_set own[3];
		struct ioasid_set *mine[3];
		memset(own, 0, sizeof(own));
		for (int i = 0; i < 3; i++) {
			CHECK_EQ(ioasid_set_init(&own[i], sp, i == 1 ? 9 : 0), 0);
			mine[i] = &own[i];
		}
		long history[400], first[400], second[400];
		churn(mine, 3, 0x9E3779B97F4A7C15ull + policy, history, 400);
		size_t len;
		unsigned char *buf = save(sp, &len);
		struct ioasid_space *copy = NULL;
		struct ioasid_set *sets[MAX_SETS];
		unsigned int nr = MAX_SETS;
		CHECK_EQ(ioasid_space_restore(buf, len, map_to_after, NULL, &copy, sets, &nr), 0);
		CHECK_EQ(nr, 3);
		CHECK_EQ(ioasid_space_live_count(copy), ioasid_space_live_count(sp));
		churn(mine, 3, 42 + policy, first, 400);
		churn(sets, 3, 42 + policy, second, 400);
		int same = 1;
		for (int i = 0; i < 400; i++)
			same &= first[i] == second[i];
		CHECK(same);
		CHECK_EQ(ioasid_space_live_count(copy), ioasid_space_live_count(sp));
		for (unsigned int i = 0; i < nr; i++)
			ioasid_set_release(sets[i]);
		for (int i = 0; i < 3; i++)
			ioasid_set_destroy(&own[i]);
		ioasid_space_destroy(copy);
		ioasid_space_destroy(sp);
		free(buf);
	}
}

static void test_errors_and_null(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 9, IOASID_POLICY_ANY);
	struct ioasid_set s;
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	ioasid_t first = ioasid_alloc(&s, 0, 9, &before[1]);
	ioasid_t second = ioasid_alloc(&s, 0, 9, NULL);
	CHECK(first <= 9 && second <= 9 && first != second);
	size_t len;
	unsigned char *buf = save(sp, &len);

	/* save: NULL size, the global space, unknown and destroyed handles. */
	unsigned char small[8];
	CHECK_EQ(ioasid_space_save(sp, small, NULL), -EINVAL);
	size_t room = sizeof(small);
	CHECK_EQ(ioasid_space_save(NULL, small, &room), -EOPNOTSUPP);
	CHECK_EQ(room, sizeof(small));
	int not_a_space;
	CHECK_EQ(ioasid_space_save((struct ioasid_space *)&not_a_space, small, &room), -EINVAL);
	struct ioasid_space *gone = ioasid_space_create(0, 9, IOASID_POLICY_LOWEST);
	ioasid_space_destroy(gone);
	CHECK_EQ(ioasid_space_save(gone, small, &room), -EINVAL);
	CHECK_EQ(room, sizeof(small));

	/* restore: NULL buf, space, nr_sets. */
	struct ioasid_space *copy = (struct ioasid_space *)&copy;
	struct ioasid_set *sets[MAX_SETS] = { 0 };
	unsigned int nr = MAX_SETS;
	CHECK_EQ(ioasid_space_restore(NULL, len, NULL, NULL, &copy, sets, &nr), -EINVAL);
	CHECK_EQ(ioasid_space_restore(buf, len, NULL, NULL, NULL, sets, &nr), -EINVAL);
	CHECK_EQ(ioasid_space_restore(buf, len, NULL, NULL, &copy, sets, NULL), -EINVAL);
	CHECK_EQ(nr, MAX_SETS);
	/* The callback's errors stop it; a positive one reads as -EINVAL. */
	int error = -ENOMEM;
	map_calls = 0;
	CHECK_EQ(ioasid_space_restore(buf, len, fail_with, &error, &copy, sets, &nr), -ENOMEM);
	CHECK_EQ(map_calls, 1);
	error = 7;
	CHECK_EQ(ioasid_space_restore(buf, len, fail_with, &error, &copy, sets, &nr), -EINVAL);
	CHECK(copy == (struct ioasid_space *)&copy && sets[0] == NULL && nr == MAX_SETS);

	/* set number and release: NULL, never used, not a restored set. */
	CHECK_EQ(ioasid_set_number(NULL), -EINVAL);
	DECLARE_IOASID_SET(unused);
	CHECK_EQ(ioasid_set_number(&unused), -ENOENT);
	ioasid_set_release(NULL);
	ioasid_set_release(&s); /* not a restored set: ignored, still works */
	CHECK(ioasid_find(&s, first, NULL) == &before[1]);
	ioasid_set_destroy(&s);
	CHECK_EQ(ioasid_set_number(&s), -ENOENT);
	ioasid_space_destroy(sp);
	free(buf);
}

/* Every shorter length, and every single flipped bit: -EINVAL, nothing
 * created, the callback never called. */
static void test_truncated_and_flipped(void)
{
	struct ioasid_space *sp = ioasid_space_create(5, 0xFFFFFFFE, IOASID_POLICY_CYCLIC);
	struct ioasid_set s1, s2;
	memset(&s1, 0, sizeof(s1));
	memset(&s2, 0, sizeof(s2));
	CHECK_EQ(ioasid_set_init(&s1, sp, 4), 0);
	CHECK_EQ(ioasid_set_init(&s2, sp, 0), 0);
	CHECK_EQ(ioasid_alloc(&s1, 0xFFFFFFF0, 0xFFFFFFFE, &before[0]), 0xFFFFFFF0);
	CHECK_EQ(ioasid_alloc(&s2, 0xFFFFFFFE, 0xFFFFFFFE, &before[1]), 0xFFFFFFFE);
	CHECK_EQ(ioasid_get_checked(&s2, 0xFFFFFFFE), 0);
	CHECK_EQ(ioasid_set_free(&s2, 0xFFFFFFFE), 0);
	size_t len;
	unsigned char *buf = save(sp, &len);
	long before_live = ioasid_space_live_count(sp);

	struct ioasid_space *copy = (struct ioasid_space *)&copy;
	struct ioasid_set *sets[MAX_SETS] = { 0 };
	unsigned int nr = MAX_SETS;
	int bad_lengths = 0, bad_flips = 0;
	map_calls = 0;
	for (size_t cut = 0; cut < len; cut++) {
		unsigned char *part = malloc(cut ? cut : 1);
		memcpy(part, buf, cut);
		bad_lengths += ioasid_space_restore(part, cut, map_to_after, NULL, &copy, sets,
						    &nr) == -EINVAL;
		free(part);
	}
	CHECK_EQ(bad_lengths, (long)len);
	unsigned char *longer = malloc(len + 1);
	memcpy(longer, buf, len);
	longer[len] = 0;
	CHECK_EQ(ioasid_space_restore(longer, len + 1, map_to_after, NULL, &copy, sets, &nr),
		 -EINVAL);
	free(longer);
	for (size_t at = 0; at < len; at++) {
		for (int bit = 0; bit < 8; bit++) {
			buf[at] ^= (unsigned char)(1u << bit);
			bad_flips += ioasid_space_restore(buf, len, map_to_after, NULL, &copy, sets,
							  &nr) == -EINVAL;
			buf[at] ^= (unsigned char)(1u << bit);
		}
	}
	CHECK_EQ(bad_flips, (long)len * 8);
	CHECK_EQ(map_calls, 0);
	CHECK(copy == (struct ioasid_space *)&copy && sets[0] == NULL && nr == MAX_SETS);
	CHECK_EQ(ioasid_space_live_count(sp), before_live);
	/* And the intact buffer still restores. */
	CHECK_EQ(ioasid_space_restore(buf, len, map_to_after, NULL, &copy, sets, &nr), 0);
	CHECK_EQ(nr, 2);
	CHECK(ioasid_find(sets[0], 0xFFFFFFF0, NULL) == &after[0]);
	/* Cyclic wrapped after 0xFFFFFFFE: both go on at the space's min. */
	CHECK_EQ(ioasid_alloc(sets[0], 0, 0xFFFFFFFE, NULL), 5);
	CHECK_EQ(ioasid_alloc(&s1, 0, 0xFFFFFFFE, NULL), 5);
	for (unsigned int i = 0; i < nr; i++)
		ioasid_set_release(sets[i]);
	CHECK_EQ(ioasid_space_live_count(copy), 1); /* the FREE_PENDING one */
	CHECK_EQ(ioasid_put_checked(NULL, 0xFFFFFFFE), -ENOENT);
	ioasid_space_destroy(copy);
	ioasid_set_destroy(&s1);
	ioasid_set_destroy(&s2);
	ioasid_space_destroy(sp);
	free(buf);
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* SPIDs in the format: C attaches them in the global space only, so the
 * buffer of a space made here gets one by hand (flag bit 1, the SPID, a
 * new checksum), as a buffer saved where SPIDs were attached has it. */
static void test_spids_in_the_format(void)
{
	struct ioasid_space *sp = ioasid_space_create(0, 99, IOASID_POLICY_LOWEST);
	struct ioasid_set s;
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ioasid_set_init(&s, sp, 0), 0);
	CHECK_EQ(ioasid_alloc(&s, 0, 99, &before[0]), 0);
	CHECK_EQ(ioasid_alloc(&s, 0, 99, &before[1]), 1);
	size_t len;
	unsigned char *buf = save(sp, &len);
	/* Header 64, no free numbers, one set record (24): IDs from 88. */
	unsigned char *second = buf + 64 + 24 + 32;
	CHECK_EQ(second[0], 1);
	CHECK_EQ(second[12], 0);
	second[12] = 2;
	put32(second + 16, 101);
	uint64_t sum = fnv1a(buf, len - 8);
	for (int i = 0; i < 8; i++)
		buf[len - 8 + i] = (unsigned char)(sum >> (8 * i));
	struct ioasid_space *copy = NULL;
	struct ioasid_set *sets[MAX_SETS];
	unsigned int nr = MAX_SETS;
	CHECK_EQ(ioasid_space_restore(buf, len, NULL, NULL, &copy, sets, &nr), 0);
	CHECK_EQ(ioasid_find_by_spid(sets[0], 101, false), 1);
	CHECK_EQ(ioasid_find_by_spid(sets[0], 100, false), INVALID_IOASID);
	CHECK_EQ(ioasid_find_by_spid(&s, 101, false), INVALID_IOASID);
	/* It saves back with the SPID. */
	size_t len2;
	unsigned char *buf2 = save(copy, &len2);
	CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
	free(buf2);
	/* A SPID field without its flag: refused. */
	second[12] = 0;
	sum = fnv1a(buf, len - 8);
	for (int i = 0; i < 8; i++)
		buf[len - 8 + i] = (unsigned char)(sum >> (8 * i));
	struct ioasid_space *none = NULL;
	CHECK_EQ(ioasid_space_restore(buf, len, map_to_after, NULL, &none, sets + 1, &nr), -EINVAL);
	CHECK(none == NULL);
	ioasid_set_release(sets[0]);
	ioasid_space_destroy(copy);
	ioasid_set_destroy(&s);
	ioasid_space_destroy(sp);
	free(buf);
}

int main(void)
{
	test_spids_in_the_format();
	test_round_trip();
	test_same_bytes_and_numbers();
	test_every_policy_continues_alike();
	test_errors_and_null();
	test_truncated_and_flipped();
	return check_report("snapshot");
}
