// SPDX-License-Identifier: Apache-2.0
/*
 * gc_bench.c - the patched bdwgc (gc/) on one allocation-heavy program in
 * three modes, side by side: non-incremental, incremental with the
 * mprotect dirty bits, incremental with the OoH dirty bits (libooh
 * self-tracking). Per mode: total time, collections, and the pauses (the
 * time the world is stopped), max and median.
 *
 * The program is GCBench-like: a long-lived binary tree and array, which a
 * quarter of the iterations rewrite in part (old pages written: what the
 * dirty bits are for), and many short-lived trees of several depths, from
 * one or more threads.
 *
 * usage: ooh-bench-gc [--threads N] [--rounds N] [--repeat N] [--csv FILE]
 * Each mode runs in a child process of its own (a VDB is chosen once per
 * process); the median run of --repeat is shown.
 */
#define GC_THREADS
#include "gc.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct node {
	struct node *left, *right;
	long value;
};

#define LONG_LIVED_DEPTH 18
#define ARRAY_SIZE	 500000
#define MAX_PAUSES	 100000

static struct node *long_lived;
static double *array;
static int rounds = 40;

static double pauses[MAX_PAUSES];
static int npauses;
static double stop_start;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Called by the collector, with its lock held. */
static void on_event(GC_EventType e)
{
	if (e == GC_EVENT_PRE_STOP_WORLD)
		stop_start = now();
	else if (e == GC_EVENT_POST_START_WORLD && npauses < MAX_PAUSES)
		pauses[npauses++] = now() - stop_start;
}

static struct node *make_tree(int depth)
{
	struct node *n = GC_MALLOC(sizeof(*n));

	if (!n) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	if (depth > 0) {
		n->left = make_tree(depth - 1);
		n->right = make_tree(depth - 1);
	}
	n->value = depth;
	return n;
}

static long check_tree(const struct node *n)
{
	return n->left ? 1 + check_tree(n->left) + check_tree(n->right) : 1;
}

/* Replaces a path's worth of subtrees of the long-lived tree. */
static void rewrite(struct node *n, unsigned int *seed, int depth)
{
	while (n->left && depth-- > 4)
		n = rand_r(seed) & 1 ? n->left : n->right;
	if (n->left) {
		n->left = make_tree(depth);
		n->right = make_tree(depth);
	}
}

static void *mutator(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	long nodes = 0;
	int r, d, i;

	for (r = 0; r < rounds; r++) {
		for (d = 4; d <= 16; d += 4)
			for (i = 0; i < (1 << (16 - d)); i++)
				nodes += check_tree(make_tree(d));
		if (r % 4 == 0) {
			for (i = 0; i < 64; i++)
				rewrite(long_lived, &seed, LONG_LIVED_DEPTH);
			for (i = 0; i < ARRAY_SIZE; i += 1024)
				array[(i + r) % ARRAY_SIZE] += 1.0;
		}
	}
	return (void *)nodes;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One run in this process; prints "time collections max median". */
static int run(const char *mode, int threads)
{
	pthread_t th[64];
	double t0, t1;
	int t, i;

	GC_INIT();
	if (strcmp(mode, "full") != 0) {
		GC_enable_incremental();
		if (!GC_is_incremental_mode()) {
			fprintf(stderr, "%s: incremental mode is off\n", mode);
			return 1;
		}
		/* The OoH VDB needs no protection; mprotect does. */
		if ((GC_incremental_protection_needs() == GC_PROTECTS_NONE) !=
		    (strcmp(mode, "ooh") == 0)) {
			fprintf(stderr, "%s: not the dirty bits asked for\n", mode);
			return 1;
		}
	}
	GC_set_on_collection_event(on_event);
	t0 = now();
	long_lived = make_tree(LONG_LIVED_DEPTH);
	array = GC_MALLOC_ATOMIC(ARRAY_SIZE * sizeof(double));
	for (i = 0; i < ARRAY_SIZE; i++)
		array[i] = i;
	for (t = 0; t < threads; t++)
		if (pthread_create(&th[t], NULL, mutator, (void *)(uintptr_t)(t + 1)) != 0) {
			perror("pthread_create");
			return 1;
		}
	for (t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	if (check_tree(long_lived) != (2L << LONG_LIVED_DEPTH) - 1) {
		fprintf(stderr, "%s: the long-lived tree is damaged\n", mode);
		return 1;
	}
	t1 = now();
	qsort(pauses, npauses, sizeof(pauses[0]), by_value);
	printf("%.3f %lu %.3f %.3f\n", t1 - t0, (unsigned long)GC_get_gc_no(),
	       npauses ? pauses[npauses - 1] * 1e3 : 0.0,
	       npauses ? pauses[npauses / 2] * 1e3 : 0.0);
	return 0;
}

struct result {
	double seconds, max_ms, median_ms;
	unsigned long collections;
};

static int child(const char *self, const char *mode, int threads, struct result *out)
{
	int fds[2], status;
	char buf[256] = "", nthreads[16], nrounds[16];
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe(fds) != 0)
		return -1;
	snprintf(nthreads, sizeof(nthreads), "%d", threads);
	snprintf(nrounds, sizeof(nrounds), "%d", rounds);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		if (strcmp(mode, "mprotect") == 0) {
			setenv("GC_OOH_VDB", "off", 1);
			setenv("GC_USE_GETWRITEWATCH", "0", 1);
		} else if (strcmp(mode, "ooh") == 0) {
			setenv("GC_OOH_VDB", "uffd", 1);
		}
		execl(self, self, "--run", mode, "--threads", nthreads, "--rounds", nrounds,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += n;
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	return sscanf(buf, "%lf %lu %lf %lf", &out->seconds, &out->collections, &out->max_ms,
		      &out->median_ms) == 4
		       ? 0
		       : -1;
}

static int by_seconds(const void *a, const void *b)
{
	double x = ((const struct result *)a)->seconds, y = ((const struct result *)b)->seconds;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const char *const modes[] = {"full", "mprotect", "ooh"};
	static const char *const names[] = {"non-incremental", "incremental, mprotect",
					    "incremental, OoH uffd"};
	struct result res[3];
	const char *run_mode = NULL, *csv_path = NULL;
	int threads = 1, repeat = 3, m, i;
	FILE *csv = NULL;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--run") && i + 1 < argc)
			run_mode = argv[++i];
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv_path = argv[++i];
		else {
			fprintf(stderr,
				"usage: %s [--threads N] [--rounds N] [--repeat N] [--csv FILE]\n",
				argv[0]);
			return 2;
		}
	}
	if (threads < 1 || threads > 64 || rounds < 1 || repeat < 1 || repeat > 99) {
		fprintf(stderr, "threads 1..64, rounds >= 1, repeat 1..99\n");
		return 2;
	}
	if (run_mode)
		return run(run_mode, threads);

	for (m = 0; m < 3; m++) {
		struct result runs[99];

		for (i = 0; i < repeat; i++)
			if (child("/proc/self/exe", modes[m], threads, &runs[i]) != 0) {
				fprintf(stderr, "%s: the run failed (is the OoH VDB available?)\n",
					names[m]);
				return 1;
			}
		qsort(runs, repeat, sizeof(runs[0]), by_seconds);
		res[m] = runs[repeat / 2];
	}
	printf("bdwgc 8.2.2 + OOH_VDB, GCBench-like, %d thread(s), %d rounds, median of %d\n\n",
	       threads, rounds, repeat);
	printf("| mode | total s | collections | max pause ms | median pause ms |\n");
	printf("|---|---|---|---|---|\n");
	for (m = 0; m < 3; m++)
		printf("| %s | %.3f | %lu | %.3f | %.3f |\n", names[m], res[m].seconds,
		       res[m].collections, res[m].max_ms, res[m].median_ms);
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv) {
			fprintf(stderr, "%s: %s\n", csv_path, strerror(errno));
			return 1;
		}
		fprintf(csv, "mode,threads,seconds,collections,max_pause_ms,median_pause_ms\n");
		for (m = 0; m < 3; m++)
			fprintf(csv, "%s,%d,%.6f,%lu,%.6f,%.6f\n", modes[m], threads,
				res[m].seconds, res[m].collections, res[m].max_ms,
				res[m].median_ms);
		fclose(csv);
	}
	return 0;
}
