/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gc_modes.h - what ooh-bench-gc and the Phoenix-like applications share:
 * running a program under the patched bdwgc in one of three modes
 * (non-incremental, incremental with the mprotect dirty bits, incremental
 * with the OoH ones), measuring its pauses (the time the world is stopped,
 * from the collector's own event callback), and running each mode in a
 * child process of its own (a VDB is chosen once per process).
 */
#ifndef OOH_BENCH_GC_MODES_H
#define OOH_BENCH_GC_MODES_H

#define GC_THREADS
#include "gc.h"

#define GCM_MODES 3
/* "full", "mprotect", "ooh", as --run takes them; and how tables name them. */
extern const char *const gcm_modes[GCM_MODES];
extern const char *const gcm_mode_names[GCM_MODES];

struct gcm_result {
	double seconds, max_ms, median_ms;
	unsigned long collections;
	/* Reads of the dirty bits (GC_read_dirty), the time they took in
	 * total (re-arming included), and the heap pages they marked dirty
	 * in total (the collector's hash entries: colliding pages count once). */
	unsigned long dirty_reads, dirty_pages;
	double dirty_read_ms;
};

double gcm_now(void);
/* Starts the collector in @mode (NULL: as the environment says), checks that
 * incremental mode and the dirty bits asked for are on, and starts recording
 * pauses. 0, or 1 after saying on stderr what is wrong (@who first). */
int gcm_start(const char *who, const char *mode);
/* Collections and pauses so far (seconds are the caller's). */
void gcm_finish(struct gcm_result *out);
/* How many pauses were recorded. */
int gcm_pauses(void);
/* Prints @r as one line for gcm_measure() to read (GCM_RESULT_FMT). */
void gcm_print_result(const struct gcm_result *r);
/* Runs `/proc/self/exe --run MODE ARGS...` for each mode @repeat times, each
 * in a child with the mode's environment, which prints its result with
 * gcm_print_result(); res[m] is the run of median time. 0, or -1 with the
 * mode that failed in *failed. */
int gcm_measure(char *const args[], int repeat, struct gcm_result res[GCM_MODES], int *failed);
/* The Markdown table of gcm_measure()'s results. */
void gcm_print_table(const struct gcm_result res[GCM_MODES]);

#endif
