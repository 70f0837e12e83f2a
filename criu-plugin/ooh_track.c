// SPDX-License-Identifier: Apache-2.0
/*
 * Pure logic of the ooh CRIU plugin (see ooh_track.h): no CRIU, no oohd.
 */
#include "ooh_track.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ooh_rangeset_init(struct ooh_rangeset *set)
{
	memset(set, 0, sizeof(*set));
}

void ooh_rangeset_free(struct ooh_rangeset *set)
{
	free(set->ranges);
	ooh_rangeset_init(set);
}

int ooh_rangeset_append(struct ooh_rangeset *set, const struct ooh_range *ranges, size_t nr,
			uint64_t page_size)
{
	size_t i;

	if (!page_size || (page_size & (page_size - 1)))
		return -EINVAL;

	for (i = 0; i < nr; i++) {
		const struct ooh_range *r = &ranges[i];
		const struct ooh_range *prev = set->nr ? &set->ranges[set->nr - 1] : NULL;

		if (r->start >= r->end || (r->start | r->end) & (page_size - 1))
			return -EINVAL;
		if (prev && r->start < prev->end)
			return -EINVAL;

		/* Adjacent ranges merge: fewer ranges to search per VMA. */
		if (prev && r->start == prev->end) {
			set->ranges[set->nr - 1].end = r->end;
			set->ranges[set->nr - 1].flags |= r->flags;
			continue;
		}

		if (set->nr == set->cap) {
			size_t cap = set->cap ? set->cap * 2 : 64;
			struct ooh_range *n = realloc(set->ranges, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			set->ranges = n;
			set->cap = cap;
		}
		set->ranges[set->nr++] = *r;
	}
	return 0;
}

uint64_t ooh_rangeset_pages(const struct ooh_rangeset *set, uint64_t page_size)
{
	uint64_t pages = 0;
	size_t i;

	for (i = 0; i < set->nr; i++)
		pages += (set->ranges[i].end - set->ranges[i].start) / page_size;
	return pages;
}

size_t ooh_bitmap_words(uint64_t start, uint64_t end, uint64_t page_size)
{
	uint64_t pages = end > start ? (end - start + page_size - 1) / page_size : 0;

	return (pages + 63) / 64;
}

/* Sets bits [first, last) of bitmap. */
static void set_bits(uint64_t *bitmap, uint64_t first, uint64_t last)
{
	while (first < last && (first % 64)) {
		bitmap[first / 64] |= 1ULL << (first % 64);
		first++;
	}
	while (first + 64 <= last) {
		bitmap[first / 64] = ~0ULL;
		first += 64;
	}
	while (first < last) {
		bitmap[first / 64] |= 1ULL << (first % 64);
		first++;
	}
}

void ooh_bitmap_fill(uint64_t *bitmap, uint64_t start, uint64_t end, uint64_t page_size)
{
	if (end > start)
		set_bits(bitmap, 0, (end - start + page_size - 1) / page_size);
}

void ooh_rangeset_to_bitmap(const struct ooh_rangeset *set, uint64_t start, uint64_t end,
			    uint64_t page_size, uint64_t *bitmap)
{
	size_t lo = 0, hi = set->nr;

	if (end <= start)
		return;

	/* First range that ends above start. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (set->ranges[mid].end <= start)
			lo = mid + 1;
		else
			hi = mid;
	}

	for (; lo < set->nr && set->ranges[lo].start < end; lo++) {
		uint64_t s = set->ranges[lo].start > start ? set->ranges[lo].start : start;
		uint64_t e = set->ranges[lo].end < end ? set->ranges[lo].end : end;

		/* Round outwards: a page touched in part is a written page. */
		set_bits(bitmap, (s - start) / page_size, (e - start + page_size - 1) / page_size);
	}
}

int ooh_state_format(char *buf, size_t len, const struct ooh_task_state *st)
{
	int n = snprintf(buf, len,
			 "ooh-track 1\nstart_time %" PRIu64 "\nsession %" PRIu64 "\nepoch %" PRIu64
			 "\n",
			 st->start_time, st->session, st->epoch);

	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return n;
}

int ooh_state_parse(const char *buf, struct ooh_task_state *st)
{
	unsigned long long start_time, session, epoch;
	int version, consumed = 0;

	if (sscanf(buf, "ooh-track %d start_time %llu session %llu epoch %llu%n", &version,
		   &start_time, &session, &epoch, &consumed) != 4 ||
	    !consumed)
		return -EINVAL;
	if (version != 1)
		return -EINVAL;
	st->start_time = start_time;
	st->session = session;
	st->epoch = epoch;
	return 0;
}

bool ooh_set_is_exact(bool tracked_now, const struct ooh_task_state *parent,
		      const struct ooh_task_state *now)
{
	if (tracked_now || !parent || !now->session)
		return false;
	if (parent->start_time != now->start_time || parent->session != now->session)
		return false;
	return now->epoch == parent->epoch + 1;
}

int ooh_parse_proc_stat(const char *line, char *state, uint64_t *start_time)
{
	/* comm may hold spaces and parentheses: fields resume after the last ')'. */
	const char *p = strrchr(line, ')');
	unsigned long long st;
	int field;

	if (!p || p[1] != ' ' || !p[2])
		return -EINVAL;
	p += 2;
	*state = *p;

	/* p is at field 3; starttime is field 22. */
	for (field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	if (sscanf(p, "%llu", &st) != 1)
		return -EINVAL;
	*start_time = st;
	return 0;
}
