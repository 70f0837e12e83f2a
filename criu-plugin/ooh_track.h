/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pure logic of the ooh CRIU plugin: collected range sets, their translation
 * into CRIU's per-VMA bitmaps, and the per-task state kept in the images.
 * Nothing here talks to CRIU or oohd, so unit tests compile it alone.
 */
#ifndef OOH_CRIU_TRACK_H
#define OOH_CRIU_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ooh/ooh.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The pages written in one epoch of one task: ascending, non-overlapping. */
struct ooh_rangeset {
	struct ooh_range *ranges;
	size_t nr;
	size_t cap;
};

void ooh_rangeset_init(struct ooh_rangeset *set);
void ooh_rangeset_free(struct ooh_rangeset *set);
/*
 * Appends ranges as oohd returns them. Returns 0, -ENOMEM, or -EINVAL if a
 * range is empty, unaligned to page_size, or not above the previous one: a
 * set we cannot trust must fail the dump, not be guessed at.
 */
int ooh_rangeset_append(struct ooh_rangeset *set, const struct ooh_range *ranges, size_t nr,
			uint64_t page_size);
uint64_t ooh_rangeset_pages(const struct ooh_rangeset *set, uint64_t page_size);

/* Number of uint64_t words of a bitmap with one bit per page of [start, end). */
size_t ooh_bitmap_words(uint64_t start, uint64_t end, uint64_t page_size);
/* Sets the bits of every page of [start, end) (start page aligned). */
void ooh_bitmap_fill(uint64_t *bitmap, uint64_t start, uint64_t end, uint64_t page_size);
/*
 * Sets bit n of bitmap for every page start + n * page_size of [start, end)
 * that any range of set touches. Bits already set stay set.
 */
void ooh_rangeset_to_bitmap(const struct ooh_rangeset *set, uint64_t start, uint64_t end,
			    uint64_t page_size, uint64_t *bitmap);

/*
 * What a dump records per task (a small text file in the images directory),
 * so that the next dump can tell whether its collect follows the one of its
 * parent images directly.
 */
struct ooh_task_state {
	uint64_t start_time; /* /proc/PID/stat starttime: the process identity */
	uint64_t session;    /* oohd's session id: the tracking identity (0: none) */
	uint64_t epoch;	     /* the epoch closed by this dump's collect */
};

#define OOH_STATE_FILE_FMT "ooh-track-%d.txt"

/* Returns the length written (excluding NUL), or -ENOSPC. */
int ooh_state_format(char *buf, size_t len, const struct ooh_task_state *st);
/* Returns 0 or -EINVAL. */
int ooh_state_parse(const char *buf, struct ooh_task_state *st);

/*
 * Whether the set just collected (described by `now`) may be used as the
 * answer for a dump whose parent images recorded `parent` (NULL when they
 * have no state for the task): only if the task was tracked before this
 * dump, by the same tracking session (a named one: an id of 0 proves
 * nothing), is the same process, and this collect
 * closed the epoch right after the parent's. Otherwise some writes happened
 * outside the set (another collect, a failed dump, a restarted daemon) and
 * every page must be dumped.
 */
bool ooh_set_is_exact(bool tracked_now, const struct ooh_task_state *parent,
		      const struct ooh_task_state *now);

/* Parses field 22 (starttime) and field 3 (state) of a /proc/PID/stat line. */
int ooh_parse_proc_stat(const char *line, char *state, uint64_t *start_time);

#ifdef __cplusplus
}
#endif

#endif /* OOH_CRIU_TRACK_H */
