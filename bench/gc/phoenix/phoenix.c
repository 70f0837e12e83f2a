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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAUSES 100000

static double pauses[MAX_PAUSES];
static int npauses;
static double stop_start;

double ph_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Called by the collector, with its lock held. */
static void on_event(GC_EventType e)
{
	if (e == GC_EVENT_PRE_STOP_WORLD)
		stop_start = ph_now();
	else if (e == GC_EVENT_POST_START_WORLD && npauses < MAX_PAUSES)
		pauses[npauses++] = ph_now() - stop_start;
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

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct result {
	double seconds, max_ms, median_ms;
	unsigned long collections;
};

/* One checked run in this process, in @mode (NULL: as the environment says). */
static int run(const struct phoenix_app *app, const char *mode, int small, int threads,
	       struct result *out)
{
	double t0;

	GC_INIT();
	if (mode && strcmp(mode, "full") != 0) {
		GC_enable_incremental();
		if (!GC_is_incremental_mode()) {
			fprintf(stderr, "%s: %s: incremental mode is off\n", app->name, mode);
			return 1;
		}
		/* The OoH VDB needs no protection; mprotect does. */
		if ((GC_incremental_protection_needs() == GC_PROTECTS_NONE) !=
		    (strcmp(mode, "ooh") == 0)) {
			fprintf(stderr, "%s: %s: not the dirty bits asked for\n", app->name, mode);
			return 1;
		}
	}
	GC_set_on_collection_event(on_event);
	t0 = ph_now();
	if (app->run(small, threads) != 0) {
		fprintf(stderr, "%s: wrong result\n", app->name);
		return 1;
	}
	out->seconds = ph_now() - t0;
	qsort(pauses, npauses, sizeof(pauses[0]), by_value);
	out->collections = (unsigned long)GC_get_gc_no();
	out->max_ms = npauses ? pauses[npauses - 1] * 1e3 : 0.0;
	out->median_ms = npauses ? pauses[npauses / 2] * 1e3 : 0.0;
	return 0;
}

static int child(const char *mode, int small, int threads, struct result *out)
{
	int fds[2], status;
	char buf[256] = "", nthreads[16];
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe(fds) != 0)
		return -1;
	snprintf(nthreads, sizeof(nthreads), "%d", threads);
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
		execl("/proc/self/exe", "/proc/self/exe", "--run", mode, "--threads", nthreads,
		      small ? "--small" : (char *)NULL, (char *)NULL);
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

static int bench(const struct phoenix_app *app, int small, int threads, int repeat,
		 const char *csv_path)
{
	static const char *const modes[] = {"full", "mprotect", "ooh"};
	static const char *const names[] = {"non-incremental", "incremental, mprotect",
					    "incremental, OoH uffd"};
	struct result res[3];
	FILE *csv;
	int m, i;

	for (m = 0; m < 3; m++) {
		struct result runs[99];

		for (i = 0; i < repeat; i++)
			if (child(modes[m], small, threads, &runs[i]) != 0) {
				fprintf(stderr,
					"%s: %s: the run failed (a wrong result, or is the OoH VDB "
					"unavailable?)\n",
					app->name, names[m]);
				return 1;
			}
		qsort(runs, repeat, sizeof(runs[0]), by_seconds);
		res[m] = runs[repeat / 2];
	}
	printf("%s (Phoenix-like), %d thread(s), median of %d\n\n", app->name, threads, repeat);
	printf("| mode | total s | collections | max pause ms | median pause ms |\n");
	printf("|---|---|---|---|---|\n");
	for (m = 0; m < 3; m++)
		printf("| %s | %.3f | %lu | %.3f | %.3f |\n", names[m], res[m].seconds,
		       res[m].collections, res[m].max_ms, res[m].median_ms);
	if (!csv_path)
		return 0;
	csv = fopen(csv_path, "w");
	if (!csv) {
		fprintf(stderr, "%s: %s\n", csv_path, strerror(errno));
		return 1;
	}
	fprintf(csv, "app,mode,threads,seconds,collections,max_pause_ms,median_pause_ms\n");
	for (m = 0; m < 3; m++)
		fprintf(csv, "%s,%s,%d,%.6f,%lu,%.6f,%.6f\n", app->name, modes[m], threads,
			res[m].seconds, res[m].collections, res[m].max_ms, res[m].median_ms);
	return fclose(csv) == 0 ? 0 : 1;
}

int phoenix_main(int argc, char **argv, const struct phoenix_app *app)
{
	const char *run_mode = NULL, *csv_path = NULL;
	int threads = 4, repeat = 3, small = 0, do_bench = 0, i;
	struct result r;

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
		printf("%.6f %lu %.6f %.6f\n", r.seconds, r.collections, r.max_ms, r.median_ms);
		return 0;
	}
	/* A test where the collector never stopped the world tests little. */
	if (npauses == 0) {
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
