// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qemu-pml: a QEMU TCG plugin that plays the hypervisor's part of Page
 * Modification Logging for the OoH guest module, against the shared memory of
 * an ivshmem device (layout: <ooh/ooh_pml_dev.h>, in include/uapi/).
 *
 * Like VMX PML with EPT dirty bits: while the guest has logging on for a
 * vCPU, the first store to a page after arming appends the page (GPA, and the
 * GVA in EPML mode) to that vCPU's 512-entry buffer; a full buffer is flushed
 * into the vCPU's ring in shared memory. FLUSH_REARM flushes every buffer and
 * clears every dirty bit, so the next write to any page is logged again.
 *
 * usage: -plugin libqemu_pml.so,shm=<shm file>[,verbose=on]
 * with   -object memory-backend-file,id=pml,share=on,mem-path=<shm file>,size=16M
 *        -device ivshmem-plain,memdev=pml
 */
#include "qemu_plugin_abi.h"
#include <ooh/ooh_pml_dev.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

OOH_PLUGIN_EXPORT int qemu_plugin_version = OOH_QEMU_PLUGIN_API_VERSION;

#define PAGE_SIZE_ (1ull << OOH_PMLDEV_PAGE_SHIFT)
#define PAGE_MASK_ (~(PAGE_SIZE_ - 1))
/* Dirty bits for 64 GiB of guest-physical space; above it every store is
 * logged (over-reporting is allowed, under-reporting is not). */
#define DIRTY_PAGES (1ull << 24)
#define NO_SLOT	    (-1)

/*
 * EPML logs the first write through each guest-virtual page of a tracked
 * task (the guest page table's dirty bit), so it remembers (tag, GVA) pairs:
 * a frame first written by the kernel through another mapping (a page fault
 * zeroing it) must not hide the task's own write to it.
 */
struct gva_slot {
	uint64_t gva;
	uint32_t tag;
	uint32_t gen; /* 0 or an old generation: empty */
};

struct pml_vcpu {
	pthread_mutex_t lock;
	int slot;	    /* guest CPU bound by IDENT, or NO_SLOT */
	uint64_t last_phys; /* of the last store outside the device */
	unsigned int count;
	struct ooh_pmldev_entry buf[OOH_PMLDEV_BUFFER_ENTRIES];
	/* touched by this vCPU's thread only */
	struct gva_slot *seen;
	uint64_t seen_cap, seen_used;
	uint32_t seen_gen;
};

static struct {
	struct ooh_pmldev_header *hdr;
	struct ooh_pmldev_entry *rings;
	size_t size;
	uint64_t *dirty; /* DIRTY_PAGES bits */
	struct pml_vcpu vcpu[OOH_PMLDEV_MAX_VCPUS];
	pthread_mutex_t rearm_lock;
	uint32_t gen; /* bumped by every FLUSH_REARM, starts at 1 */
	/* API address minus guest-physical address, learnt by CALIBRATE */
	uint64_t phys_delta;
	bool calibrated;
	bool verbose;
	uint64_t overflow_logged;
} pml;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	qemu_plugin_outs(line);
}

static volatile struct ooh_pmldev_vcpu *slot_ctl(int slot)
{
	return &pml.hdr->vcpu[slot];
}

/* Moves a vCPU's buffer into its slot's ring; caller holds v->lock. */
static void flush_locked(struct pml_vcpu *v)
{
	volatile struct ooh_pmldev_vcpu *ctl;
	uint64_t head, tail, cap = pml.hdr->ring_entries;
	struct ooh_pmldev_entry *ring;
	unsigned int i;

	if (!v->count)
		return;
	if (v->slot == NO_SLOT) {
		v->count = 0; /* cannot happen: logging needs a bound slot */
		return;
	}
	ctl = slot_ctl(v->slot);
	ring = pml.rings + (uint64_t)v->slot * cap;
	head = ctl->head;
	tail = __atomic_load_n(&ctl->tail, __ATOMIC_ACQUIRE);
	for (i = 0; i < v->count; i++) {
		if (head - tail >= cap) {
			/* Reported to the guest, which fails the epoch. */
			__atomic_store_n(&ctl->lost, ctl->lost + (v->count - i), __ATOMIC_RELEASE);
			if (pml.verbose && !pml.overflow_logged++)
				say("qemu-pml: slot %d ring full, entries dropped and reported\n",
				    v->slot);
			break;
		}
		ring[head & (cap - 1)] = v->buf[i];
		head++;
	}
	__atomic_store_n(&ctl->head, head, __ATOMIC_RELEASE);
	v->count = 0;
}

static void flush_all(void)
{
	unsigned int i;

	for (i = 0; i < OOH_PMLDEV_MAX_VCPUS; i++) {
		pthread_mutex_lock(&pml.vcpu[i].lock);
		flush_locked(&pml.vcpu[i]);
		pthread_mutex_unlock(&pml.vcpu[i].lock);
	}
}

static void flush_rearm(void)
{
	unsigned int i;
	int s;

	pthread_mutex_lock(&pml.rearm_lock);
	flush_all();
	for (s = 0; s < OOH_PMLDEV_MAX_VCPUS; s++)
		__atomic_store_n(&slot_ctl(s)->rearm_head, slot_ctl(s)->head, __ATOMIC_RELEASE);
	/*
	 * Clearing after the flush: a store that found its bit set before the
	 * clear has its entry either flushed above or still in a buffer (then it
	 * belongs to the next epoch); either way it is never lost.
	 */
	for (i = 0; i < DIRTY_PAGES / 64; i++)
		if (pml.dirty[i])
			__atomic_store_n(&pml.dirty[i], 0, __ATOMIC_RELAXED);
	__atomic_fetch_add(&pml.gen, 1, __ATOMIC_SEQ_CST);
	pml.hdr->rearms++;
	pthread_mutex_unlock(&pml.rearm_lock);
}

static void doorbell(unsigned int cpu, int slot)
{
	volatile struct ooh_pmldev_vcpu *ctl = slot_ctl(slot);
	int status = 0;

	switch (ctl->cmd) {
	case OOH_PMLDEV_CMD_IDENT:
		if ((int)ctl->arg != slot) {
			status = -EINVAL;
			break;
		}
		pthread_mutex_lock(&pml.vcpu[cpu].lock);
		flush_locked(&pml.vcpu[cpu]);
		pml.vcpu[cpu].slot = slot;
		pthread_mutex_unlock(&pml.vcpu[cpu].lock);
		ctl->bound = 1;
		if (pml.verbose)
			say("qemu-pml: vCPU %u is guest CPU %d\n", cpu, slot);
		break;
	case OOH_PMLDEV_CMD_FLUSH_REARM:
		flush_rearm();
		break;
	case OOH_PMLDEV_CMD_FLUSH:
		flush_all();
		break;
	case OOH_PMLDEV_CMD_CALIBRATE:
		__atomic_store_n(&pml.phys_delta,
				 (pml.vcpu[cpu].last_phys & PAGE_MASK_) - (ctl->arg64 & PAGE_MASK_),
				 __ATOMIC_RELEASE);
		pml.calibrated = true;
		if (pml.verbose)
			say("qemu-pml: address correction %#" PRIx64 "\n", pml.phys_delta);
		break;
	default:
		status = -ENOSYS;
	}
	ctl->status = status;
	__atomic_store_n(&ctl->ack, ctl->doorbell, __ATOMIC_RELEASE);
}

static uint64_t gva_hash(uint64_t gva, uint32_t tag)
{
	uint64_t h = (gva >> OOH_PMLDEV_PAGE_SHIFT) ^ ((uint64_t)tag << 40);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static void gva_insert(struct gva_slot *t, uint64_t cap, uint64_t gva, uint32_t tag, uint32_t gen)
{
	uint64_t i = gva_hash(gva, tag) & (cap - 1);

	while (t[i].gen == gen)
		i = (i + 1) & (cap - 1);
	t[i].gva = gva;
	t[i].tag = tag;
	t[i].gen = gen;
}

/* True if (tag, gva) was logged since the last re-arm; else remembers it. */
static bool gva_seen(struct pml_vcpu *v, uint64_t gva, uint32_t tag)
{
	uint32_t gen = __atomic_load_n(&pml.gen, __ATOMIC_ACQUIRE);
	uint64_t i;

	if (v->seen_gen != gen) {
		v->seen_gen = gen; /* older entries now read as empty */
		v->seen_used = 0;
	}
	if (!v->seen || v->seen_used * 2 >= v->seen_cap) {
		uint64_t cap = v->seen ? v->seen_cap * 2 : 4096, k;
		struct gva_slot *t = calloc(cap, sizeof(*t));

		if (!t)
			return false; /* log it again: over-reporting is fine */
		for (k = 0; v->seen && k < v->seen_cap; k++)
			if (v->seen[k].gen == gen)
				gva_insert(t, cap, v->seen[k].gva, v->seen[k].tag, gen);
		free(v->seen);
		v->seen = t;
		v->seen_cap = cap;
	}
	for (i = gva_hash(gva, tag) & (v->seen_cap - 1); v->seen[i].gen == gen;
	     i = (i + 1) & (v->seen_cap - 1))
		if (v->seen[i].gva == gva && v->seen[i].tag == tag)
			return true;
	v->seen[i].gva = gva;
	v->seen[i].tag = tag;
	v->seen[i].gen = gen;
	v->seen_used++;
	return false;
}

static void log_page(unsigned int cpu, uint64_t gpa, uint64_t gva, uint32_t mode)
{
	struct pml_vcpu *v = &pml.vcpu[cpu];
	uint64_t pfn = gpa >> OOH_PMLDEV_PAGE_SHIFT;
	struct ooh_pmldev_entry *e;

	if (mode & OOH_PMLDEV_LOG_GVA) {
		if (gva_seen(v, gva & PAGE_MASK_, slot_ctl(v->slot)->tag))
			return;
	} else if (pfn < DIRTY_PAGES) {
		uint64_t bit = 1ull << (pfn & 63);

		if (__atomic_load_n(&pml.dirty[pfn / 64], __ATOMIC_RELAXED) & bit)
			return;
		if (__atomic_fetch_or(&pml.dirty[pfn / 64], bit, __ATOMIC_ACQ_REL) & bit)
			return;
	}
	pthread_mutex_lock(&v->lock);
	e = &v->buf[v->count++];
	e->gpa = gpa & PAGE_MASK_;
	e->gva = (mode & OOH_PMLDEV_LOG_GVA) ? (gva & PAGE_MASK_) : 0;
	e->tag = slot_ctl(v->slot)->tag;
	e->flags = mode;
	slot_ctl(v->slot)->logged++;
	if (v->count == OOH_PMLDEV_BUFFER_ENTRIES)
		flush_locked(v); /* the "PML full" exit */
	pthread_mutex_unlock(&v->lock);
}

static void on_store(unsigned int cpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
	struct qemu_plugin_hwaddr *hw;
	uint64_t gpa, bar, size, last;
	uint32_t mode;
	int slot;

	(void)udata;
	if (cpu >= OOH_PMLDEV_MAX_VCPUS || !qemu_plugin_mem_is_store(info))
		return;
	hw = qemu_plugin_get_hwaddr(info, vaddr);
	if (!hw || qemu_plugin_hwaddr_is_io(hw))
		return;
	gpa = qemu_plugin_hwaddr_phys_addr(hw);

	bar = pml.hdr->bar_gpa;
	if (bar && gpa >= bar && gpa < bar + pml.size) {
		uint64_t off = gpa - bar;
		uint64_t first = offsetof(struct ooh_pmldev_header, vcpu);
		uint64_t rel;

		if (off < first)
			return;
		rel = off - first;
		slot = (int)(rel / sizeof(struct ooh_pmldev_vcpu));
		if (slot < OOH_PMLDEV_MAX_VCPUS &&
		    rel % sizeof(struct ooh_pmldev_vcpu) ==
			    offsetof(struct ooh_pmldev_vcpu, doorbell))
			doorbell(cpu, slot);
		return; /* the device's own memory is never logged */
	}

	pml.vcpu[cpu].last_phys = gpa;
	slot = pml.vcpu[cpu].slot;
	if (slot == NO_SLOT)
		return;
	mode = slot_ctl(slot)->mode;
	if (!mode)
		return;
	gpa -= __atomic_load_n(&pml.phys_delta, __ATOMIC_RELAXED);
	log_page(cpu, gpa, vaddr, mode);

	/* A store that straddles a page boundary dirties both pages. */
	size = 1ull << qemu_plugin_mem_size_shift(info);
	last = vaddr + size - 1;
	if ((last & PAGE_MASK_) != (vaddr & PAGE_MASK_)) {
		hw = qemu_plugin_get_hwaddr(info, last);
		if (hw && !qemu_plugin_hwaddr_is_io(hw))
			log_page(cpu, qemu_plugin_hwaddr_phys_addr(hw) - pml.phys_delta, last,
				 mode);
		else
			log_page(cpu, (gpa & PAGE_MASK_) + PAGE_SIZE_, last, mode);
	}
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t i, n = qemu_plugin_tb_n_insns(tb);

	(void)id;
	for (i = 0; i < n; i++)
		qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_store,
						 QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_W, NULL);
}

static void pml_at_exit(qemu_plugin_id_t id, void *udata)
{
	uint64_t logged = 0, lost = 0;
	int s;

	(void)id;
	(void)udata;
	for (s = 0; s < OOH_PMLDEV_MAX_VCPUS; s++) {
		logged += slot_ctl(s)->logged;
		lost += slot_ctl(s)->lost;
	}
	say("qemu-pml: logged=%" PRIu64 " lost=%" PRIu64 " rearms=%" PRIu64 "\n", logged, lost,
	    (uint64_t)pml.hdr->rearms);
}

static int map_shm(const char *path)
{
	uint64_t ring_bytes, ring_entries;
	struct stat st;
	void *p;
	int fd;

	fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0) {
		say("qemu-pml: cannot open %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((size_t)st.st_size < (1u << 20)) {
		say("qemu-pml: %s is smaller than 1 MiB\n", path);
		close(fd);
		return -1;
	}
	p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		say("qemu-pml: mmap %s: %s\n", path, strerror(errno));
		return -1;
	}
	pml.hdr = p;
	pml.size = st.st_size;
	memset(p, 0, sizeof(*pml.hdr));
	/* Rings fill what follows the header, one power of two per slot. */
	ring_bytes = (st.st_size - 16384) / OOH_PMLDEV_MAX_VCPUS;
	ring_entries = 1;
	while (ring_entries * 2 * sizeof(struct ooh_pmldev_entry) <= ring_bytes)
		ring_entries *= 2;
	pml.hdr->nr_slots = OOH_PMLDEV_MAX_VCPUS;
	pml.hdr->shm_size = st.st_size;
	pml.hdr->ring_offset = 16384;
	pml.hdr->ring_entries = ring_entries;
	pml.hdr->version = OOH_PMLDEV_VERSION;
	pml.rings = (struct ooh_pmldev_entry *)((char *)p + 16384);
	__atomic_store_n(&pml.hdr->magic, OOH_PMLDEV_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

OOH_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
					  char **argv)
{
	const char *file = NULL;
	int i;

	if (!info->system_emulation) {
		say("qemu-pml: needs system emulation\n");
		return -1;
	}
	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "shm=", 4))
			file = argv[i] + 4;
		else if (!strcmp(argv[i], "verbose=on"))
			pml.verbose = true;
		else {
			say("qemu-pml: unknown argument\n");
			return -1;
		}
	}
	if (!file) {
		say("qemu-pml: shm=<shared memory file> is required\n");
		return -1;
	}
	pml.dirty = calloc(DIRTY_PAGES / 64, sizeof(uint64_t));
	if (!pml.dirty || map_shm(file))
		return -1;
	pthread_mutex_init(&pml.rearm_lock, NULL);
	pml.gen = 1;
	for (i = 0; i < OOH_PMLDEV_MAX_VCPUS; i++) {
		pthread_mutex_init(&pml.vcpu[i].lock, NULL);
		pml.vcpu[i].slot = NO_SLOT;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
	qemu_plugin_register_atexit_cb(id, pml_at_exit, NULL);
	if (pml.verbose)
		say("qemu-pml: %zu-byte device, %" PRIu64 " entries per vCPU ring\n", pml.size,
		    (uint64_t)pml.hdr->ring_entries);
	return 0;
}
