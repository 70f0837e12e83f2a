// SPDX-License-Identifier: Apache-2.0
/*
 * word_count.c - Phoenix-like word count: how often each word of a text
 * (generated here from a vocabulary, with a skewed distribution) occurs,
 * most frequent first. Map tasks take blocks of the text and count them in
 * a hash table of their own (collected entries and words, garbage after
 * the task); each task then merges its table into the shared one under a
 * lock; the reduce step sorts the shared entries by count. The generator
 * knows every word's count: the result must be exactly that.
 */
#include "phoenix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_BYTES  32768
#define TASK_BUCKETS 1024
#define BUCKETS	     8192

struct entry {
	struct entry *next;
	char *word;
	long count;
};

struct shared {
	const char *text;
	size_t size;
	size_t next_block; /* taken with __atomic */
	pthread_mutex_t lock;
	struct entry **table; /* [BUCKETS] */
	long distinct;
};

static unsigned long hash(const char *w, size_t len)
{
	unsigned long h = 1469598103934665603UL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)w[i]) * 1099511628211UL;
	return h;
}

/* The entry of the word in @table, created with count 0 if new. */
static struct entry *lookup(struct entry **table, unsigned long nbuckets, const char *w, size_t len,
			    long *distinct)
{
	struct entry **head = &table[hash(w, len) % nbuckets], *e;

	for (e = *head; e; e = e->next)
		if (strncmp(e->word, w, len) == 0 && e->word[len] == '\0')
			return e;
	e = ph_malloc(sizeof(*e));
	e->word = ph_malloc_atomic(len + 1);
	memcpy(e->word, w, len);
	e->word[len] = '\0';
	e->next = *head;
	*head = e;
	if (distinct)
		++*distinct;
	return e;
}

static void *worker(void *arg)
{
	struct shared *s = *(struct shared **)arg;
	size_t b;

	while ((b = __atomic_fetch_add(&s->next_block, 1, __ATOMIC_RELAXED)) * BLOCK_BYTES <
	       s->size) {
		struct entry **local = ph_malloc(TASK_BUCKETS * sizeof(*local));
		size_t p = b * BLOCK_BYTES, end = p + BLOCK_BYTES;

		/* A block holds the words that start in it. */
		if (p > 0)
			while (p < s->size && s->text[p - 1] != ' ')
				p++;
		if (end > s->size)
			end = s->size;
		while (p < end) {
			size_t len = strcspn(s->text + p, " ");

			lookup(local, TASK_BUCKETS, s->text + p, len, NULL)->count++;
			p += len + 1;
		}
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < TASK_BUCKETS; i++)
			for (struct entry *e = local[i]; e; e = e->next)
				lookup(s->table, BUCKETS, e->word, strlen(e->word), &s->distinct)
					->count += e->count;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static int by_count(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;

	return x->count != y->count ? (x->count < y->count) - (x->count > y->count)
				    : strcmp(x->word, y->word);
}

static int word_count_run(int small, int threads)
{
	long nwords = small ? 100000 : 2000000, vocab = small ? 2000 : 20000, used = 0, missing = 0;
	struct shared *s = ph_malloc(sizeof(*s));
	struct shared **args = ph_malloc(threads * sizeof(*args));
	char **words = ph_malloc(vocab * sizeof(*words));
	long *expected = ph_malloc_atomic(vocab * sizeof(long));
	char *text = ph_malloc_atomic((size_t)nwords * 16), *t = text;
	struct entry **sorted;
	uint64_t seed = 3;
	long n = 0;

	/* Distinct words: the index in base 25 ('a'..'y'), 'z', random letters. */
	for (long v = 0; v < vocab; v++) {
		char buf[32];
		int len = 0, extra = 1 + (int)(ph_rand(&seed) % 6);

		for (long x = v; x; x /= 25)
			buf[len++] = (char)('a' + x % 25);
		buf[len++] = 'z';
		for (int i = 0; i < extra; i++)
			buf[len++] = (char)('a' + ph_rand(&seed) % 26);
		buf[len] = '\0';
		words[v] = ph_malloc_atomic(len + 1);
		memcpy(words[v], buf, len + 1);
		expected[v] = 0;
	}
	for (long i = 0; i < nwords; i++) {
		uint64_t r = ph_rand(&seed);
		/* The product of two uniform draws: small indexes are frequent. */
		long v = (long)((r % vocab) * ((r >> 32) % vocab) / vocab);
		size_t len = strlen(words[v]);

		memcpy(t, words[v], len);
		t += len;
		*t++ = ' ';
		expected[v]++;
	}
	s->text = text;
	s->size = (size_t)(t - text);
	s->table = ph_malloc(BUCKETS * sizeof(*s->table));
	pthread_mutex_init(&s->lock, NULL);
	for (int i = 0; i < threads; i++)
		args[i] = s;
	ph_parallel(threads, worker, args, sizeof(*args));
	pthread_mutex_destroy(&s->lock);

	sorted = ph_malloc(s->distinct * sizeof(*sorted));
	for (int i = 0; i < BUCKETS; i++)
		for (struct entry *e = s->table[i]; e; e = e->next)
			sorted[n++] = e;
	qsort(sorted, n, sizeof(*sorted), by_count);

	for (long v = 0; v < vocab; v++) {
		struct entry *e;

		if (!expected[v])
			continue;
		used++;
		e = lookup(s->table, BUCKETS, words[v], strlen(words[v]), &missing);
		if (e->count != expected[v]) {
			fprintf(stderr, "word_count: \"%s\" counted %ld times, expected %ld\n",
				words[v], e->count, expected[v]);
			return 1;
		}
	}
	if (missing || n != used) {
		fprintf(stderr, "word_count: %ld distinct words counted, %ld written\n", n, used);
		return 1;
	}
	for (long i = 1; i < n; i++)
		if (sorted[i - 1]->count < sorted[i]->count) {
			fprintf(stderr, "word_count: not sorted at %ld\n", i);
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct phoenix_app app = {"word_count", word_count_run};

	return phoenix_main(argc, argv, &app);
}
