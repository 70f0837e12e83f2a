// SPDX-License-Identifier: Apache-2.0
/*
 * string_match.c - Phoenix-like string match: a "keys file" of a few keys
 * and a "words file" (both generated here); each word is encrypted and
 * compared with the encrypted keys. Map tasks take blocks of lines; each
 * encrypted word is a collected string of its own (garbage at once), each
 * match a collected record listed under a lock. The generator plants the
 * keys at known places: the matches must be exactly those.
 */
#include "phoenix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS	    4
#define KEY_LEN	    12 /* longer than any generated word: no chance match */
#define BLOCK_BYTES 16384

struct match {
	struct match *next;
	const char *word; /* into the words file */
	int key;
};

struct shared {
	const char *words;
	size_t size;
	char *enc_keys[NKEYS];
	size_t next_block; /* taken with __atomic */
	pthread_mutex_t lock;
	struct match *matches;
	long nmatches[NKEYS];
};

/* A substitution that depends on the position: one-to-one, as a cipher must be. */
static char *encrypt(const char *word, size_t len)
{
	char *out = ph_malloc_atomic(len + 1);

	for (size_t i = 0; i < len; i++)
		out[i] = (char)('a' + (word[i] - 'a' + 7 * i + 3) % 26);
	out[len] = '\0';
	return out;
}

static void *worker(void *arg)
{
	struct shared *s = *(struct shared **)arg;
	size_t b;

	while ((b = __atomic_fetch_add(&s->next_block, 1, __ATOMIC_RELAXED)) * BLOCK_BYTES <
	       s->size) {
		size_t p = b * BLOCK_BYTES, end = p + BLOCK_BYTES;

		/* A block holds the lines that start in it. */
		if (p > 0)
			while (p < s->size && s->words[p - 1] != '\n')
				p++;
		if (end > s->size)
			end = s->size;
		while (p < end) {
			const char *w = s->words + p;
			size_t len = strcspn(w, "\n");
			char *enc = encrypt(w, len);

			for (int k = 0; k < NKEYS; k++)
				if (strcmp(enc, s->enc_keys[k]) == 0) {
					struct match *m = ph_malloc(sizeof(*m));

					m->word = w;
					m->key = k;
					pthread_mutex_lock(&s->lock);
					m->next = s->matches;
					s->matches = m;
					s->nmatches[k]++;
					pthread_mutex_unlock(&s->lock);
				}
			p += len + 1;
		}
	}
	return NULL;
}

static int string_match_run(int small, int threads)
{
	long nwords = small ? 100000 : 5000000, planted[NKEYS] = {0};
	struct shared *s = ph_malloc(sizeof(*s));
	struct shared **args = ph_malloc(threads * sizeof(*args));
	char keys[NKEYS][KEY_LEN + 1];
	uint64_t seed = 5;
	char *words = ph_malloc_atomic((size_t)nwords * (KEY_LEN + 1) + 1), *w = words;

	for (int k = 0; k < NKEYS; k++) {
		for (int i = 0; i < KEY_LEN; i++)
			keys[k][i] = (char)('a' + ph_rand(&seed) % 26);
		keys[k][KEY_LEN] = '\0';
	}
	for (long n = 0; n < nwords; n++) {
		uint64_t r = ph_rand(&seed);

		if (r % 500 == 0) {
			int k = (int)((r >> 32) % NKEYS);

			memcpy(w, keys[k], KEY_LEN);
			w += KEY_LEN;
			planted[k]++;
		} else {
			int len = 3 + (int)((r >> 8) % 8); /* 3..10 */

			for (int i = 0; i < len; i++)
				*w++ = (char)('a' + ph_rand(&seed) % 26);
		}
		*w++ = '\n';
	}
	*w = '\0';
	s->words = words;
	s->size = (size_t)(w - words);
	for (int k = 0; k < NKEYS; k++)
		s->enc_keys[k] = encrypt(keys[k], KEY_LEN);
	pthread_mutex_init(&s->lock, NULL);
	for (int t = 0; t < threads; t++)
		args[t] = s;
	ph_parallel(threads, worker, args, sizeof(*args));
	pthread_mutex_destroy(&s->lock);

	for (int k = 0; k < NKEYS; k++)
		if (s->nmatches[k] != planted[k]) {
			fprintf(stderr, "string_match: key %d found %ld times, planted %ld\n", k,
				s->nmatches[k], planted[k]);
			return 1;
		}
	for (struct match *m = s->matches; m; m = m->next)
		if (strncmp(m->word, keys[m->key], KEY_LEN) != 0 || m->word[KEY_LEN] != '\n') {
			fprintf(stderr, "string_match: a match at offset %ld is not key %d\n",
				(long)(m->word - words), m->key);
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct phoenix_app app = {"string_match", string_match_run};

	return phoenix_main(argc, argv, &app);
}
