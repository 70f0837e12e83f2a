/* SPDX-License-Identifier: Apache-2.0 */
/*
 * phoenix.h - what the Phoenix-like applications (histogram, kmeans, pca,
 * string_match, word_count; after the HPCA'07 Phoenix paper) share: their
 * entry point, allocation through the patched bdwgc, a deterministic
 * generator, and the driver that runs them in one mode (a test) or in the
 * three modes side by side (the benchmark).
 */
#pragma once

#define GC_THREADS
#include "gc.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct phoenix_app {
	const char *name;
	/*
	 * Generates the input (small: a few tens of milliseconds, for the
	 * tests), computes the result with @threads threads, and checks it.
	 * Returns 0 when the result is right; otherwise says what is wrong on
	 * stderr and returns 1.
	 */
	int (*run)(int small, int threads);
};

/*
 * Runs @app as its command line says: without --bench, once in the mode the
 * environment chooses (GC_ENABLE_INCREMENTAL, GC_OOH_VDB); with --bench,
 * non-incremental, incremental with the mprotect dirty bits and incremental
 * with the OoH ones, each in a child process of its own, side by side.
 */
int phoenix_main(int argc, char **argv, const struct phoenix_app *app);

/* GC_MALLOC and GC_MALLOC_ATOMIC that exit on failure. */
void *ph_malloc(size_t size);
void *ph_malloc_atomic(size_t size);

/* A deterministic 64-bit generator (splitmix64). */
uint64_t ph_rand(uint64_t *state);

/* Runs fn(arg_i) on @threads threads, the args being @args + i * @size. */
void ph_parallel(int threads, void *(*fn)(void *), void *args, size_t size);

/* Monotonic seconds. */
double ph_now(void);
