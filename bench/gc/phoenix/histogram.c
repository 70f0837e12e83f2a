// SPDX-License-Identifier: Apache-2.0
/*
 * histogram.c - Phoenix-like histogram: the 256-bin histogram of each colour
 * channel of a 24-bit BMP image (generated here). The image is split into
 * bands of rows; each map task counts a band into a result of its own,
 * listed under a lock; the reduce step adds the results. Done for several
 * passes, each pass's results becoming garbage; checked against a
 * sequential count.
 */
#include "phoenix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAND_ROWS 4

struct band_result {
	struct band_result *next;
	long *counts; /* [3][256]: blue, green, red, as BMP stores them */
};

struct image {
	const unsigned char *pixels;
	long width, height, stride;
};

struct shared {
	const struct image *img;
	long next_band; /* the next band to count; taken with __atomic */
	pthread_mutex_t lock;
	struct band_result *results;
};

static void put_le(unsigned char *p, uint32_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le(const unsigned char *p, int bytes)
{
	uint32_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A BMP file in memory: gradients plus noise, so that every bin is used. */
static unsigned char *make_bmp(long width, long height, size_t *size)
{
	long stride = (width * 3 + 3) & ~3L;
	uint64_t seed = 42;
	unsigned char *bmp;

	*size = 54 + (size_t)stride * height;
	bmp = ph_malloc_atomic(*size);
	memset(bmp, 0, 54);
	bmp[0] = 'B';
	bmp[1] = 'M';
	put_le(bmp + 2, (uint32_t)*size, 4);
	put_le(bmp + 10, 54, 4); /* pixel data offset */
	put_le(bmp + 14, 40, 4); /* BITMAPINFOHEADER */
	put_le(bmp + 18, (uint32_t)width, 4);
	put_le(bmp + 22, (uint32_t)height, 4);
	put_le(bmp + 26, 1, 2);
	put_le(bmp + 28, 24, 2);
	for (long y = 0; y < height; y++) {
		unsigned char *row = bmp + 54 + y * stride;

		for (long x = 0; x < width; x++) {
			uint64_t r = ph_rand(&seed);

			row[3 * x] = (unsigned char)(x + (r & 15));
			row[3 * x + 1] = (unsigned char)(y + ((r >> 8) & 31));
			row[3 * x + 2] = (unsigned char)(r >> 16);
		}
		memset(row + 3 * width, 0, stride - 3 * width);
	}
	return bmp;
}

static int parse_bmp(const unsigned char *bmp, size_t size, struct image *img)
{
	if (size < 54 || bmp[0] != 'B' || bmp[1] != 'M' || get_le(bmp + 28, 2) != 24) {
		fprintf(stderr, "histogram: not a 24-bit BMP\n");
		return -1;
	}
	img->width = get_le(bmp + 18, 4);
	img->height = get_le(bmp + 22, 4);
	img->stride = (img->width * 3 + 3) & ~3L;
	img->pixels = bmp + get_le(bmp + 10, 4);
	if ((size_t)(img->pixels - bmp) + (size_t)img->stride * img->height > size) {
		fprintf(stderr, "histogram: the BMP is truncated\n");
		return -1;
	}
	return 0;
}

static void count_rows(const struct image *img, long y0, long y1, long *counts)
{
	for (long y = y0; y < y1; y++) {
		const unsigned char *row = img->pixels + y * img->stride;

		for (long x = 0; x < img->width; x++)
			for (int c = 0; c < 3; c++)
				counts[c * 256 + row[3 * x + c]]++;
	}
}

static void *map_worker(void *arg)
{
	struct shared *s = *(struct shared **)arg;
	long bands = (s->img->height + BAND_ROWS - 1) / BAND_ROWS, b;

	while ((b = __atomic_fetch_add(&s->next_band, 1, __ATOMIC_RELAXED)) < bands) {
		struct band_result *r = ph_malloc(sizeof(*r));
		long y1 = (b + 1) * BAND_ROWS;

		r->counts = ph_malloc_atomic(3 * 256 * sizeof(long));
		memset(r->counts, 0, 3 * 256 * sizeof(long));
		count_rows(s->img, b * BAND_ROWS, y1 < s->img->height ? y1 : s->img->height,
			   r->counts);
		pthread_mutex_lock(&s->lock);
		r->next = s->results;
		s->results = r;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static int histogram_run(int small, int threads)
{
	long width = small ? 320 : 2400, height = small ? 200 : 1600;
	int passes = small ? 3 : 40;
	struct shared **args = ph_malloc(threads * sizeof(*args));
	static long expected[3 * 256], got[3 * 256];
	struct image img;
	size_t size;
	unsigned char *bmp = make_bmp(width, height, &size);

	if (parse_bmp(bmp, size, &img) != 0)
		return 1;
	memset(expected, 0, sizeof(expected));
	count_rows(&img, 0, img.height, expected);
	for (int p = 0; p < passes; p++) {
		struct shared *s = ph_malloc(sizeof(*s));

		s->img = &img;
		pthread_mutex_init(&s->lock, NULL);
		for (int t = 0; t < threads; t++)
			args[t] = s;
		ph_parallel(threads, map_worker, args, sizeof(*args));
		memset(got, 0, sizeof(got));
		for (struct band_result *r = s->results; r; r = r->next)
			for (int i = 0; i < 3 * 256; i++)
				got[i] += r->counts[i];
		pthread_mutex_destroy(&s->lock);
		for (int i = 0; i < 3 * 256; i++)
			if (got[i] != expected[i]) {
				fprintf(stderr,
					"histogram: pass %d: channel %d bin %d: %ld, expected "
					"%ld\n",
					p, i / 256, i % 256, got[i], expected[i]);
				return 1;
			}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct phoenix_app app = {"histogram", histogram_run};

	return phoenix_main(argc, argv, &app);
}
