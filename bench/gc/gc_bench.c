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
#include "gc_modes.h"

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

static struct node *long_lived;
static double *array;
static int rounds = 40;

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

/* One run in this process; prints "time collections max median". */
static int run(const char *mode, int threads)
{
	pthread_t th[64];
	double t0, t1;
	int t, i;

	struct gcm_result r;

	if (gcm_start("ooh-bench-gc", mode) != 0)
		return 1;
	t0 = gcm_now();
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
	t1 = gcm_now();
	gcm_finish(&r);
	r.seconds = t1 - t0;
	gcm_print_result(&r);
	return 0;
}

int main(int argc, char **argv)
{
	struct gcm_result res[GCM_MODES];
	const char *run_mode = NULL, *csv_path = NULL;
	char nthreads[16], nrounds[16];
	char *args[] = {"--threads", nthreads, "--rounds", nrounds, NULL};
	int threads = 1, repeat = 3, failed, m, i;
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

	snprintf(nthreads, sizeof(nthreads), "%d", threads);
	snprintf(nrounds, sizeof(nrounds), "%d", rounds);
	if (gcm_measure(args, repeat, res, &failed) != 0) {
		fprintf(stderr, "%s: the run failed (is the OoH VDB available?)\n",
			gcm_mode_names[failed]);
		return 1;
	}
	printf("bdwgc 8.2.2 + OOH_VDB, GCBench-like, %d thread(s), %d rounds, median of %d\n\n",
	       threads, rounds, repeat);
	gcm_print_table(res);
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv) {
			fprintf(stderr, "%s: %s\n", csv_path, strerror(errno));
			return 1;
		}
		fprintf(csv, "mode,threads,seconds,collections,max_pause_ms,median_pause_ms,"
			     "dirty_reads,dirty_read_ms,dirty_pages\n");
		for (m = 0; m < GCM_MODES; m++)
			fprintf(csv, "%s,%d,%.6f,%lu,%.6f,%.6f,%lu,%.6f,%lu\n", gcm_modes[m],
				threads, res[m].seconds, res[m].collections, res[m].max_ms,
				res[m].median_ms, res[m].dirty_reads, res[m].dirty_read_ms,
				res[m].dirty_pages);
		fclose(csv);
	}
	return 0;
}
