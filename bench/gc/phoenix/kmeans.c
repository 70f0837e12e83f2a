// SPDX-License-Identifier: Apache-2.0
/*
 * kmeans.c - Phoenix-like k-means: points in a few integer dimensions are
 * grouped around K means. Each iteration, the map step assigns every point
 * (a collected object) to its nearest mean and emits it under its cluster
 * (the intermediate pairs: per thread and cluster, a list of collected
 * chunks of points, garbage after the iteration); the reduce step sums
 * each cluster's points into its new mean (integer division, so that the
 * result does not depend on the order of the threads). Until no point
 * moves. Checked against a sequential run from the same start.
 */
#include "phoenix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIM	       3
#define K	       16
#define MAX_ITERATIONS 60

struct point {
	int *coord; /* [DIM] */
	int cluster;
};

/* Points emitted under one cluster by one map thread. */
struct chunk {
	struct chunk *next;
	int n;
	struct point *points[62];
};

struct job {
	struct point **points;
	const int *means; /* [K][DIM] */
	long begin, end;
	struct chunk **emitted; /* [K]: this iteration's, allocated by the worker */
	long moved;
};

static int nearest(const int *coord, const int *means)
{
	long best = -1;
	int best_k = 0;

	for (int k = 0; k < K; k++) {
		long d = 0;

		for (int i = 0; i < DIM; i++) {
			long diff = coord[i] - means[k * DIM + i];

			d += diff * diff;
		}
		if (best < 0 || d < best) {
			best = d;
			best_k = k;
		}
	}
	return best_k;
}

static void *assign_worker(void *arg)
{
	struct job *j = arg;
	struct chunk **emitted = ph_malloc(K * sizeof(*emitted));

	j->moved = 0;
	for (long n = j->begin; n < j->end; n++) {
		struct point *pt = j->points[n];
		int k = nearest(pt->coord, j->means);

		if (k != pt->cluster) {
			pt->cluster = k;
			j->moved++;
		}
		if (!emitted[k] || emitted[k]->n == 62) {
			struct chunk *c = ph_malloc(sizeof(*c));

			c->next = emitted[k];
			emitted[k] = c;
		}
		emitted[k]->points[emitted[k]->n++] = pt;
	}
	j->emitted = emitted;
	return NULL;
}

/* New means from the sums; an empty cluster keeps its mean. */
static int *new_means(const int *old, const long *sum, const long *count)
{
	int *means = ph_malloc_atomic(K * DIM * sizeof(int));

	for (int k = 0; k < K; k++)
		for (int i = 0; i < DIM; i++)
			means[k * DIM + i] =
				count[k] ? (int)(sum[k * DIM + i] / count[k]) : old[k * DIM + i];
	return means;
}

/* The same computation on one thread, without the collected objects. */
static int sequential(struct point **points, long n, int *means, int *cluster)
{
	static long sum[K * DIM], count[K];
	int it;

	for (long i = 0; i < n; i++)
		cluster[i] = -1;
	for (it = 0; it < MAX_ITERATIONS; it++) {
		long moved = 0;

		memset(sum, 0, sizeof(sum));
		memset(count, 0, sizeof(count));
		for (long i = 0; i < n; i++) {
			int k = nearest(points[i]->coord, means);

			moved += k != cluster[i];
			cluster[i] = k;
			count[k]++;
			for (int d = 0; d < DIM; d++)
				sum[k * DIM + d] += points[i]->coord[d];
		}
		if (!moved)
			break;
		for (int k = 0; k < K; k++)
			for (int d = 0; d < DIM; d++)
				if (count[k])
					means[k * DIM + d] = (int)(sum[k * DIM + d] / count[k]);
	}
	return it;
}

static int kmeans_run(int small, int threads)
{
	long n = small ? 20000 : 80000;
	struct point **points = ph_malloc(n * sizeof(*points));
	struct job *jobs = ph_malloc(threads * sizeof(*jobs));
	int *means = ph_malloc_atomic(K * DIM * sizeof(int));
	int *seq_means = malloc(K * DIM * sizeof(int));
	int *seq_cluster = malloc(n * sizeof(int));
	uint64_t seed = 7;
	int it, seq_it;

	if (!seq_means || !seq_cluster) {
		fprintf(stderr, "kmeans: out of memory\n");
		return 1;
	}
	/* Points around K hidden centres, so that the clusters converge. */
	for (long i = 0; i < n; i++) {
		struct point *pt = ph_malloc(sizeof(*pt));
		int centre = (int)(ph_rand(&seed) % K);

		pt->coord = ph_malloc_atomic(DIM * sizeof(int));
		for (int d = 0; d < DIM; d++)
			pt->coord[d] = (int)((centre * 7919 * (d + 1)) % 1000) +
				       (int)(ph_rand(&seed) % 200);
		pt->cluster = -1;
		points[i] = pt;
	}
	for (int k = 0; k < K; k++)
		memcpy(means + k * DIM, points[k]->coord, DIM * sizeof(int));
	memcpy(seq_means, means, K * DIM * sizeof(int));

	for (it = 0; it < MAX_ITERATIONS; it++) {
		long sum[K * DIM] = {0}, count[K] = {0}, moved = 0;

		for (int t = 0; t < threads; t++) {
			jobs[t].points = points;
			jobs[t].means = means;
			jobs[t].begin = n * t / threads;
			jobs[t].end = n * (t + 1) / threads;
		}
		ph_parallel(threads, assign_worker, jobs, sizeof(*jobs));
		for (int t = 0; t < threads; t++) {
			moved += jobs[t].moved;
			for (int k = 0; k < K; k++)
				for (struct chunk *c = jobs[t].emitted[k]; c; c = c->next)
					for (int i = 0; i < c->n; i++) {
						count[k]++;
						for (int d = 0; d < DIM; d++)
							sum[k * DIM + d] += c->points[i]->coord[d];
					}
		}
		if (!moved)
			break;
		means = new_means(means, sum, count);
	}

	seq_it = sequential(points, n, seq_means, seq_cluster);
	if (it != seq_it || memcmp(means, seq_means, K * DIM * sizeof(int)) != 0) {
		fprintf(stderr, "kmeans: %d iterations, sequential %d; or the means differ\n", it,
			seq_it);
		return 1;
	}
	for (long i = 0; i < n; i++)
		if (points[i]->cluster != seq_cluster[i]) {
			fprintf(stderr, "kmeans: point %ld in cluster %d, expected %d\n", i,
				points[i]->cluster, seq_cluster[i]);
			return 1;
		}
	free(seq_means);
	free(seq_cluster);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct phoenix_app app = {"kmeans", kmeans_run};

	return phoenix_main(argc, argv, &app);
}
