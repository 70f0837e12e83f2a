// SPDX-License-Identifier: Apache-2.0
/*
 * phoenix.c - the driver the Phoenix-like applications share (phoenix.h):
 * one checked run in the environment's mode (the `gc` test suite), or the
 * three modes side by side with total time, collections and pauses (the
 * benchmark, as bench/gc/gc_bench.c measures them: a pause is the time the
 * world is stopped, from the collector's own event callback).
 *
 * usage: APP [--small] [--threads N]
 *        APP --bench [--small] [--threads N] [--repeat N] [--csv FILE]
 */
#include "phoenix.h"

#include "gc_modes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double ph_now(void)
{
	return gcm_now();
}

void *ph_malloc(size_t size)
{
	void *p = GC_MALLOC(size);

	if (!p) {
		fprintf(stderr, "out of memory (GC_MALLOC of %zu bytes)\n", size);
		exit(1);
	}
	return p;
}

void *ph_malloc_atomic(size_t size)
{
	void *p = GC_MALLOC_ATOMIC(size);

	if (!p) {
		fprintf(stderr, "out of memory (GC_MALLOC_ATOMIC of %zu bytes)\n", size);
		exit(1);
	}
	return p;
}

uint64_t ph_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void ph_parallel(int threads, void *(*fn)(void *), void *args, size_t size)
{
	pthread_t th[64];
	int t;

	/* gc.h (GC_THREADS) makes these GC_pthread_create: threads the collector stops and scans. */
	for (t = 0; t < threads; t++)
		if (pthread_create(&th[t], NULL, fn, (char *)args + t * size) != 0) {
			perror("pthread_create");
			exit(1);
		}
	for (t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
}

/* One checked run in this process, in @mode (NULL: as the environment says). */
static int run(const struct phoenix_app *app, const char *mode, int small, int threads,
	       struct gcm_result *out)
{
	double t0;

	if (gcm_start(app->name, mode) != 0)
		return 1;
	t0 = gcm_now();
	if (app->run(small, threads) != 0) {
		fprintf(stderr, "%s: wrong result\n", app->name);
		return 1;
	}
	out->seconds = gcm_now() - t0;
	gcm_finish(out);
	return 0;
}

static int bench(const struct phoenix_app *app, int small, int threads, int repeat,
		 const char *csv_path)
{
	struct gcm_result res[GCM_MODES];
	char nthreads[16];
	char *args[] = {"--threads", nthreads, small ? "--small" : NULL, NULL};
	FILE *csv;
	int failed, m;

	snprintf(nthreads, sizeof(nthreads), "%d", threads);
	if (gcm_measure(args, repeat, res, &failed) != 0) {
		fprintf(stderr,
			"%s: %s: the run failed (a wrong result, or is the OoH VDB "
			"unavailable?)\n",
			app->name, gcm_mode_names[failed]);
		return 1;
	}
	printf("%s (Phoenix-like), %d thread(s), median of %d\n\n", app->name, threads, repeat);
	gcm_print_table(res);
	if (!csv_path)
		return 0;
	csv = fopen(csv_path, "w");
	if (!csv) {
		fprintf(stderr, "%s: %s\n", csv_path, strerror(errno));
		return 1;
	}
	fprintf(csv, "app,mode,threads,seconds,collections,max_pause_ms,median_pause_ms,"
		     "dirty_reads,dirty_read_ms,dirty_pages\n");
	for (m = 0; m < GCM_MODES; m++)
		fprintf(csv, "%s,%s,%d,%.6f,%lu,%.6f,%.6f,%lu,%.6f,%lu\n", app->name, gcm_modes[m],
			threads, res[m].seconds, res[m].collections, res[m].max_ms,
			res[m].median_ms, res[m].dirty_reads, res[m].dirty_read_ms,
			res[m].dirty_pages);
	return fclose(csv) == 0 ? 0 : 1;
}

int phoenix_main(int argc, char **argv, const struct phoenix_app *app)
{
	const char *run_mode = NULL, *csv_path = NULL;
	int threads = 4, repeat = 3, small = 0, do_bench = 0, i;
	struct gcm_result r;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--run") && i + 1 < argc)
			run_mode = argv[++i];
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv_path = argv[++i];
		else if (!strcmp(argv[i], "--small"))
			small = 1;
		else if (!strcmp(argv[i], "--bench"))
			do_bench = 1;
		else {
			fprintf(stderr,
				"usage: %s [--small] [--threads N]\n"
				"       %s --bench [--small] [--threads N] [--repeat N] [--csv "
				"FILE]\n",
				argv[0], argv[0]);
			return 2;
		}
	}
	if (threads < 1 || threads > 64 || repeat < 1 || repeat > 99) {
		fprintf(stderr, "threads 1..64, repeat 1..99\n");
		return 2;
	}
	if (do_bench)
		return bench(app, small, threads, repeat, csv_path);
	if (run(app, run_mode, small, threads, &r) != 0)
		return 1;
	if (run_mode) {
		gcm_print_result(&r);
		return 0;
	}
	/* A test where the collector never stopped the world tests little. */
	if (gcm_pauses() == 0) {
		fprintf(stderr, "%s: the collector never ran during the run: a larger input?\n",
			app->name);
		return 1;
	}
	printf("%s: OK, %d thread(s), %.3f s, %lu collections, incremental %s, "
	       "max pause %.3f ms, median %.3f ms\n",
	       app->name, threads, r.seconds, r.collections,
	       GC_is_incremental_mode() ? "on" : "off", r.max_ms, r.median_ms);
	return 0;
}
