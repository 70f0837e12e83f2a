/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libooh self-tracking: which pages of the caller's own memory were written
 * since the last collect, in process, without oohd. For garbage collectors
 * (a virtual dirty bit) and for anything that copies its memory
 * incrementally.
 *
 * Built on async userfaultfd write-protect and PAGEMAP_SCAN (Linux >= 6.7):
 * the first write to a tracked page after a collect is resolved inside the
 * kernel (no signal, no round trip), and a collect is one scan that reads
 * and re-arms atomically per page. The same code as oohd's uffd-wp backend.
 *
 * What is reported, for the tracked ranges:
 *  - every page written since the previous collect (or since it was
 *    tracked), exactly;
 *  - wholly (OOH_RANGE_WHOLESALE): mappings made, moved (mremap) or
 *    replaced inside a tracked range since the previous collect, pages
 *    discarded (MADV_DONTNEED, MADV_FREE: they now read as zero), and
 *    shared mappings (MAP_SHARED), at every collect, since their pages also
 *    change through the page cache.
 * Pages are never missed; file pages of private file mappings that were
 * only read are not reported.
 *
 * Threads: any thread may write tracked memory. Calls on one handle must
 * not run concurrently. The handle owns one thread of its own, which takes
 * the kernel's notices of discarded pages: a thread that discards tracked
 * pages waits until that notice is read, so it must keep running (a
 * collector that stops the world must not stop it; it never touches the
 * tracked memory, blocks every signal and allocates nothing).
 *
 * Stopped worlds: ooh_self_collect() allocates no memory, so it may run
 * while other threads are stopped anywhere (inside malloc too), as a
 * collector's stop-the-world leaves them; unless it fails, or a mapping
 * appeared inside a tracked range since the previous collect (made, moved
 * or replaced by mmap/mremap: adopting it allocates). ooh_self_open(),
 * _track() and _untrack() allocate.
 *
 * fork(): the child's memory is not tracked by the parent's handle. In the
 * child, every call but ooh_self_close() fails with -ECHILD; close it and
 * open a new one.
 *
 * The PML ring (OOH_SELF_PML): where the OoH guest module runs (a guest of
 * Xen with SPML, or of QEMU with the qemu-pml device), oohd tracks the
 * calling process with its pml-ring backend and each collect asks oohd for
 * the set, clipped to the tracked ranges. Pages are never missed there
 * either: a ring overflow or lost entries make oohd report every mapping
 * (the tracked ranges wholly, OOH_RANGE_WHOLESALE), and a failed exchange
 * fails the collect. A collect allocates nothing in the calling thread (the
 * exchange runs in a thread of the handle, which allocates); the process
 * must not be tracked by oohd already (-EBUSY). No discard notice thread.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure; ooh_self_last_error() then says what failed.
 */
#ifndef OOH_SELF_H
#define OOH_SELF_H

#include "ooh.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ooh_self ooh_self;

/* Opens self-tracking. -ENOTSUP when the kernel lacks async userfaultfd
 * write-protect or PAGEMAP_SCAN, -EPERM when userfaultfd is refused
 * (vm.unprivileged_userfaultfd, seccomp); ooh_self_last_error() says which.
 * On failure *out is still set (if out is not NULL) so that the error can
 * be read; close it. */
int ooh_self_open(ooh_self **out);

/* Where the dirty bits come from (ooh_self_open_backend()). */
#define OOH_SELF_AUTO 0 /* uffd, else the PML ring */
#define OOH_SELF_UFFD 1 /* async userfaultfd write-protect, in process */
#define OOH_SELF_PML 2  /* the OoH guest module's PML ring, through oohd */

/* ooh_self_open() with a choice of mechanism. OOH_SELF_PML fails with
 * -ENODEV when the OoH guest module is absent (/dev/ooh-ctl), with
 * oohd's error (-ENOENT, -ECONNREFUSED...) when oohd does not answer or
 * refuses, -EBUSY when oohd already tracks this process. OOH_SELF_AUTO
 * tries uffd, then the PML ring, and on failure says why for both. */
int ooh_self_open_backend(ooh_self **out, int backend);
/* Which one an open handle uses: "uffd" or "pml" ("" if it failed). */
const char *ooh_self_backend(const ooh_self *self);
void ooh_self_close(ooh_self *self);
/* Message of the last failure ("" if none), valid until the next call. */
const char *ooh_self_last_error(const ooh_self *self);

/* Tracks [addr, addr + len), page aligned; may hold no mapping yet (a
 * reservation that is mapped later). Writes from now on are reported;
 * earlier ones are not. Fails with -EBUSY if another userfaultfd already
 * handles a mapping there. */
int ooh_self_track(ooh_self *self, void *addr, size_t len);
/* Stops tracking [addr, addr + len) (page aligned). */
int ooh_self_untrack(ooh_self *self, void *addr, size_t len);

/* Receives a collect's ranges, in batches, ascending within a batch. A
 * page is in one range only (unless a mapping is replaced while the collect
 * runs: then it may come exact and again wholesale). */
typedef void (*ooh_self_sink)(void *ctx, const struct ooh_range *ranges, size_t count);

/* Get-and-reset over every tracked range: calls sink with every range
 * written (or to be taken wholly) since the previous collect, and re-arms.
 * A page written while this runs is in this set or the next. Returns the
 * number of pages reported, or a negative errno (then tracking may be
 * incomplete: report everything, untrack and track again). */
long ooh_self_collect(ooh_self *self, ooh_self_sink sink, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* OOH_SELF_H */
