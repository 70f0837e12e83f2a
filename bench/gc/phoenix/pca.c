// SPDX-License-Identifier: Apache-2.0
/*
 * pca.c - Phoenix-like PCA front half: the mean of each row of an integer
 * matrix, then the covariance matrix of the rows. Map tasks take rows (for
 * the means) and then rows of the covariance matrix (each the covariance
 * of row i with rows i..n-1, a collected row of its own); the reduce step
 * mirrors the upper triangle. Done twice, the first result becoming
 * garbage; checked against a sequential computation of the means and of a
 * sample of entries, and for symmetry.
 */
#include "phoenix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shared {
	int **rows; /* [nrows][ncols] */
	long nrows, ncols;
	long *mean;
	long long **cov; /* [nrows][nrows] */
	long next;	 /* the next row to do; taken with __atomic */
	int phase;	 /* 0: means, 1: covariance */
};

static long row_mean(const int *row, long ncols)
{
	long long s = 0;

	for (long c = 0; c < ncols; c++)
		s += row[c];
	return (long)(s / ncols);
}

static long long covariance(const struct shared *s, long i, long j)
{
	long long acc = 0;

	for (long c = 0; c < s->ncols; c++)
		acc += (long long)(s->rows[i][c] - s->mean[i]) * (s->rows[j][c] - s->mean[j]);
	return acc / (s->ncols - 1);
}

static void *worker(void *arg)
{
	struct shared *s = *(struct shared **)arg;
	long i;

	while ((i = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED)) < s->nrows) {
		if (s->phase == 0) {
			s->mean[i] = row_mean(s->rows[i], s->ncols);
		} else {
			long long *out = ph_malloc_atomic(s->nrows * sizeof(*out));

			for (long j = i; j < s->nrows; j++)
				out[j] = covariance(s, i, j);
			s->cov[i] = out;
		}
	}
	return NULL;
}

static int pca_run(int small, int threads)
{
	long nrows = small ? 128 : 400, ncols = small ? 2048 : 4000;
	struct shared *s = ph_malloc(sizeof(*s));
	struct shared **args = ph_malloc(threads * sizeof(*args));
	uint64_t seed = 11;

	s->nrows = nrows;
	s->ncols = ncols;
	s->rows = ph_malloc(nrows * sizeof(*s->rows));
	for (long r = 0; r < nrows; r++) {
		s->rows[r] = ph_malloc_atomic(ncols * sizeof(int));
		/* Rows correlated in groups, plus noise. */
		for (long c = 0; c < ncols; c++)
			s->rows[r][c] =
				(int)((c * (r % 7 + 1)) % 1000) + (int)(ph_rand(&seed) % 100);
	}
	for (int t = 0; t < threads; t++)
		args[t] = s;
	for (int pass = 0; pass < 2; pass++) {
		s->mean = ph_malloc_atomic(nrows * sizeof(long));
		s->cov = ph_malloc(nrows * sizeof(*s->cov));
		s->phase = 0;
		s->next = 0;
		ph_parallel(threads, worker, args, sizeof(*args));
		s->phase = 1;
		s->next = 0;
		ph_parallel(threads, worker, args, sizeof(*args));
		for (long i = 0; i < nrows; i++)
			for (long j = 0; j < i; j++)
				s->cov[i][j] = s->cov[j][i];
	}

	for (long r = 0; r < nrows; r++)
		if (s->mean[r] != row_mean(s->rows[r], ncols)) {
			fprintf(stderr, "pca: mean of row %ld: %ld, expected %ld\n", r, s->mean[r],
				row_mean(s->rows[r], ncols));
			return 1;
		}
	for (int k = 0; k < 400; k++) {
		long i = (long)(ph_rand(&seed) % nrows), j = (long)(ph_rand(&seed) % nrows);
		long long want = covariance(s, i, j);

		if (s->cov[i][j] != want || s->cov[j][i] != want) {
			fprintf(stderr,
				"pca: cov[%ld][%ld] = %lld, cov[%ld][%ld] = %lld, expected %lld\n",
				i, j, s->cov[i][j], j, i, s->cov[j][i], want);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct phoenix_app app = {"pca", pca_run};

	return phoenix_main(argc, argv, &app);
}
