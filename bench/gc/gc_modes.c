// SPDX-License-Identifier: Apache-2.0
/*
 * gc_modes.c - the three modes of the patched bdwgc, their pauses, and a
 * child process per run (gc_modes.h).
 */
#include "gc_modes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAUSES 100000
#define MAX_ARGS   16

const char *const gcm_modes[GCM_MODES] = {"full", "mprotect", "ooh"};
const char *const gcm_mode_names[GCM_MODES] = {"non-incremental", "incremental, mprotect",
					       "incremental, OoH uffd"};

static double pauses[MAX_PAUSES];
static int npauses;
static double stop_start;

double gcm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Called by the collector, with its lock held. */
static void on_event(GC_EventType e)
{
	if (e == GC_EVENT_PRE_STOP_WORLD)
		stop_start = gcm_now();
	else if (e == GC_EVENT_POST_START_WORLD && npauses < MAX_PAUSES)
		pauses[npauses++] = gcm_now() - stop_start;
}

int gcm_start(const char *who, const char *mode)
{
	GC_INIT();
	if (mode && strcmp(mode, "full") != 0) {
		GC_enable_incremental();
		if (!GC_is_incremental_mode()) {
			fprintf(stderr, "%s: %s: incremental mode is off\n", who, mode);
			return 1;
		}
		/* The OoH VDB needs no protection; mprotect does. */
		if ((GC_incremental_protection_needs() == GC_PROTECTS_NONE) !=
		    (strcmp(mode, "ooh") == 0)) {
			fprintf(stderr, "%s: %s: not the dirty bits asked for\n", who, mode);
			return 1;
		}
	}
	GC_set_on_collection_event(on_event);
	return 0;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void gcm_finish(struct gcm_result *out)
{
	qsort(pauses, npauses, sizeof(pauses[0]), by_value);
	out->collections = (unsigned long)GC_get_gc_no();
	out->max_ms = npauses ? pauses[npauses - 1] * 1e3 : 0.0;
	out->median_ms = npauses ? pauses[npauses / 2] * 1e3 : 0.0;
	out->dirty_reads = GC_get_read_dirty_count();
	out->dirty_read_ms = GC_get_read_dirty_total_time() / 1e3;
	out->dirty_pages = GC_get_read_dirty_blocks();
}

void gcm_print_result(const struct gcm_result *r)
{
	printf("%.6f %lu %.6f %.6f %lu %.6f %lu\n", r->seconds, r->collections, r->max_ms,
	       r->median_ms, r->dirty_reads, r->dirty_read_ms, r->dirty_pages);
}

int gcm_pauses(void)
{
	return npauses;
}

static int child(const char *mode, char *const args[], struct gcm_result *out)
{
	char *argv[MAX_ARGS + 4] = {"/proc/self/exe", "--run", (char *)mode};
	int fds[2], status, i;
	char buf[256] = "";
	ssize_t n, got = 0;
	pid_t pid;

	for (i = 0; args[i] && i < MAX_ARGS; i++)
		argv[3 + i] = args[i];
	if (pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		unsetenv("GC_ENABLE_INCREMENTAL");
		if (strcmp(mode, "mprotect") == 0) {
			setenv("GC_OOH_VDB", "off", 1);
			setenv("GC_USE_GETWRITEWATCH", "0", 1);
		} else if (strcmp(mode, "ooh") == 0) {
			setenv("GC_OOH_VDB", "uffd", 1);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += n;
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	return sscanf(buf, "%lf %lu %lf %lf %lu %lf %lu", &out->seconds, &out->collections,
		      &out->max_ms, &out->median_ms, &out->dirty_reads, &out->dirty_read_ms,
		      &out->dirty_pages) == 7
		       ? 0
		       : -1;
}

static int by_seconds(const void *a, const void *b)
{
	double x = ((const struct gcm_result *)a)->seconds;
	double y = ((const struct gcm_result *)b)->seconds;

	return x < y ? -1 : x > y;
}

int gcm_measure(char *const args[], int repeat, struct gcm_result res[GCM_MODES], int *failed)
{
	int m, i;

	for (m = 0; m < GCM_MODES; m++) {
		struct gcm_result runs[99];

		for (i = 0; i < repeat && i < 99; i++)
			if (child(gcm_modes[m], args, &runs[i]) != 0) {
				*failed = m;
				return -1;
			}
		qsort(runs, i, sizeof(runs[0]), by_seconds);
		res[m] = runs[i / 2];
	}
	return 0;
}

void gcm_print_table(const struct gcm_result res[GCM_MODES])
{
	int m;

	printf("| mode | total s | collections | max pause ms | median pause ms "
	       "| dirty-bit reads | reading ms | pages marked dirty |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	for (m = 0; m < GCM_MODES; m++)
		printf("| %s | %.3f | %lu | %.3f | %.3f | %lu | %.2f | %lu |\n", gcm_mode_names[m],
		       res[m].seconds, res[m].collections, res[m].max_ms, res[m].median_ms,
		       res[m].dirty_reads, res[m].dirty_read_ms, res[m].dirty_pages);
}
