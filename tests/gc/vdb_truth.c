// SPDX-License-Identifier: Apache-2.0
/*
 * vdb_truth.c - ground truth for the patched bdwgc's OoH dirty bits
 * (OOH_VDB, gc/patches/): in incremental mode, every page of the heap
 * written between two GC_read_dirty() calls must read as dirty
 * (GC_page_was_dirty()), and, the OoH VDB being exact per page, no page
 * left alone may. Scenarios: one thread; four threads; discarded pages; a
 * heap section added between the reads; a child of fork() (whose first
 * read must report what the parent wrote before the fork).
 *
 * Linked against the static libgc: GC_read_dirty() and GC_page_was_dirty()
 * are internal, hidden in the shared library. Collections are disabled
 * while the test reads dirty bits itself (they would consume them), and a
 * full collection ends it. Exit 0: pass, 1: fail, 77: the kernel lacks
 * what libooh self-tracking needs.
 *
 * usage: gc-vdb-truth [uffd|pml|soft-dirty] - the dirty bits to check (uffd
 * by default). "pml": libooh through oohd's PML ring (the vm suite runs it
 * in a guest with the OoH module), exact as well. "soft-dirty": bdwgc's
 * SOFT_VDB (GC_OOH_VDB=off); the kernel also sets the bit on pages nobody
 * wrote (a merged or new mapping), so pages dirty but not written are
 * counted, not failed.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ooh/self.h>

#include "gc.h"

/* The collector's internals read here (private/gc_priv.h). */
struct hblk;
void GC_read_dirty(int output_unneeded);
int GC_page_was_dirty(struct hblk *h);

#define NOBJ	  32
#define OBJ_PAGES 16
#define NTHREADS  4
#define BIG_PAGES 4096

static size_t page;
static int exact_vdb = 1; /* 0: dirty but not written is allowed */
static char *objs[NOBJ];  /* a root: the objects stay reachable */
static char *big;
static unsigned char written[NOBJ][OBJ_PAGES];

static void *read_dirty_locked(void *arg)
{
	GC_read_dirty(0);
	return arg;
}

static void read_dirty(void)
{
	GC_call_with_alloc_lock(read_dirty_locked, NULL);
}

/* Two reads: what was written before is taken, and the discards the VDB
 * reports in two successive reads are out of the way. */
static void settle(void)
{
	read_dirty();
	read_dirty();
}

static void *was_dirty_locked(void *p)
{
	return GC_page_was_dirty((struct hblk *)p) ? p : NULL;
}

static int was_dirty(char *p)
{
	return GC_call_with_alloc_lock(was_dirty_locked, p) != NULL;
}

static void choose(unsigned int seed)
{
	int o, p;

	for (o = 0; o < NOBJ; o++)
		for (p = 0; p < OBJ_PAGES; p++)
			written[o][p] = rand_r(&seed) % 3 == 0;
}

static void write_objs(int first, int last)
{
	int o, p;

	for (o = first; o < last; o++)
		for (p = 0; p < OBJ_PAGES; p++)
			if (written[o][p])
				objs[o][p * page + (size_t)(o + p) % page] ^= 1;
}

static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;

	write_objs(t * NOBJ / NTHREADS, (t + 1) * NOBJ / NTHREADS);
	return NULL;
}

/* Compares the dirty bits of the objects' pages with written[]; with
 * exact set, a page not written but dirty fails too. */
static int check(const char *what, int exact)
{
	int o, p, n = 0, missed = 0, extra = 0;

	for (o = 0; o < NOBJ; o++)
		for (p = 0; p < OBJ_PAGES; p++) {
			int dirty = was_dirty(objs[o] + p * page);

			n += written[o][p];
			if (written[o][p] && !dirty)
				missed++;
			if (!written[o][p] && dirty)
				extra++;
		}
	exact &= exact_vdb;
	printf("%-34s %d pages, %d written: %d missed, %d dirty but not written%s\n", what,
	       NOBJ * OBJ_PAGES, n, missed, extra, exact ? "" : " (allowed)");
	return missed == 0 && (!exact || extra == 0);
}

static int single_thread(void)
{
	settle();
	choose(1);
	write_objs(0, NOBJ);
	read_dirty();
	return check("one thread", 1);
}

static int threads(void)
{
	pthread_t th[NTHREADS];
	int t;

	settle();
	choose(2);
	for (t = 0; t < NTHREADS; t++)
		if (pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t) != 0) {
			perror("pthread_create");
			return 0;
		}
	for (t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	read_dirty();
	return check("four threads", 1);
}

/* A discarded page reads as zero: changed, though nobody wrote it. */
static int discards(void)
{
	int o;

	settle();
	choose(3);
	write_objs(0, NOBJ);
	for (o = 0; o < NOBJ; o += 3) {
		if (madvise(objs[o] + 5 * page, page, MADV_DONTNEED) != 0) {
			perror("madvise");
			return 0;
		}
		/* bdwgc's SOFT_VDB does not see discards (a page not present
		 * has no soft-dirty bit); bdwgc itself discards free blocks
		 * only, so it promises nothing for them. */
		written[o][5] = exact_vdb;
	}
	read_dirty();
	return check(exact_vdb ? "written and discarded" : "written, discards not counted", 1);
}

/* A section added between two reads: its pages, all written by the
 * allocation that cleared them, are dirty; from the next read on, exact. */
static int heap_growth(void)
{
	int p, missed = 0, extra = 0, n = 0;

	settle();
	if (!GC_expand_hp(2 * BIG_PAGES * page)) {
		printf("GC_expand_hp failed\n");
		return 0;
	}
	big = GC_MALLOC(BIG_PAGES * page);
	if (!big) {
		printf("GC_MALLOC of the big object failed\n");
		return 0;
	}
	read_dirty();
	for (p = 0; p < BIG_PAGES; p++)
		missed += !was_dirty(big + p * page);
	printf("%-34s %d pages, %d written: %d missed\n", "a new heap section", BIG_PAGES,
	       BIG_PAGES, missed);
	settle();
	for (p = 0; p < BIG_PAGES; p += 7)
		big[p * page] = 1;
	read_dirty();
	missed = 0;
	for (p = 0; p < BIG_PAGES; p++) {
		int dirty = was_dirty(big + p * page);

		n += p % 7 == 0;
		missed += p % 7 == 0 && !dirty;
		extra += p % 7 != 0 && dirty;
	}
	printf("%-34s %d pages, %d written: %d missed, %d dirty but not written%s\n",
	       "then the same section", BIG_PAGES, n, missed, extra, exact_vdb ? "" : " (allowed)");
	return missed == 0 && (!exact_vdb || extra == 0);
}

/* The child tracks its own heap: its first read reports what the parent
 * wrote since its last read (all of it, at least), then it is exact. The
 * parent's tracking goes on, exact. */
static int fork_child(void)
{
	pid_t child;
	int status, ok;

	settle();
	choose(4);
	write_objs(0, NOBJ);
	child = fork();
	if (child < 0) {
		perror("fork");
		return 0;
	}
	if (child == 0) {
		read_dirty();
		ok = check("child: written before fork()", 0);
		settle();
		choose(5);
		write_objs(0, NOBJ);
		read_dirty();
		ok &= check("child: then", 1);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	if (waitpid(child, &status, 0) != child) {
		perror("waitpid");
		return 0;
	}
	read_dirty();
	ok = check("parent: across fork()", 1);
	return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	const char *vdb = argc > 1 ? argv[1] : "uffd";
	ooh_self *probe = NULL;
	int o, ok = 1;

	if (!strcmp(vdb, "soft-dirty")) {
		/* bdwgc's own SOFT_VDB: no probe, the check below tells. */
		setenv("GC_OOH_VDB", "off", 1);
		unsetenv("GC_USE_GETWRITEWATCH");
		exact_vdb = 0;
	} else if (!strcmp(vdb, "uffd") || !strcmp(vdb, "pml")) {
		/* Only where libooh self-tracking works; soft-dirty bits stay
		 * out. */
		int backend = !strcmp(vdb, "pml") ? OOH_SELF_PML : OOH_SELF_UFFD;

		if (ooh_self_open_backend(&probe, backend) < 0) {
			printf("SKIP: libooh self-tracking (%s) is unavailable here: %s\n", vdb,
			       ooh_self_last_error(probe));
			ooh_self_close(probe);
			return 77;
		}
		ooh_self_close(probe);
		setenv("GC_OOH_VDB", vdb, 1);
		setenv("GC_USE_GETWRITEWATCH", "0", 1);
	} else {
		fprintf(stderr, "usage: %s [uffd|pml|soft-dirty]\n", argv[0]);
		return 2;
	}
	page = (size_t)sysconf(_SC_PAGESIZE);

	GC_INIT();
	GC_enable_incremental();
	if (!GC_is_incremental_mode() || GC_incremental_protection_needs() != GC_PROTECTS_NONE) {
		printf("FAIL: the %s dirty bits are not in use (incremental %d, protection %d)\n",
		       vdb, GC_is_incremental_mode(), GC_incremental_protection_needs());
		return 1;
	}
	for (o = 0; o < NOBJ; o++) {
		objs[o] = GC_MALLOC(OBJ_PAGES * page);
		if (!objs[o] || (uintptr_t)objs[o] % page) {
			printf("FAIL: object %d at %p is not page aligned\n", o, (void *)objs[o]);
			return 1;
		}
	}
	GC_gcollect();
	GC_disable();
	ok &= single_thread();
	ok &= threads();
	ok &= discards();
	ok &= heap_growth();
	ok &= fork_child();
	GC_enable();
	/* The reads above took dirty bits a partial collection would need;
	 * a full one does not use them. */
	GC_gcollect();
	printf("%s (%s dirty bits: %lu reads, %lu pages marked dirty)\n", ok ? "PASS" : "FAIL", vdb,
	       GC_get_read_dirty_count(), GC_get_read_dirty_blocks());
	return ok ? 0 : 1;
}
