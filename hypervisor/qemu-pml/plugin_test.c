// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit test of the qemu-pml plugin without QEMU: this program provides the
 * qemu_plugin_* functions the plugin calls (exported with -rdynamic), loads
 * the plugin, and plays a guest: doorbells, stores with chosen virtual and
 * "API physical" addresses, and the shared memory the module would read.
 * usage: qemu-pml-plugin-test path/to/libqemu_pml.so
 */
#include "qemu_plugin_abi.h"
#include <ooh/ooh_pml_dev.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the fake QEMU side ---- */

struct qemu_plugin_hwaddr {
	uint64_t phys;
};

static qemu_plugin_vcpu_tb_trans_cb_t tb_trans_cb;
static qemu_plugin_vcpu_mem_cb_t mem_cb;
static uint64_t next_phys[2]; /* what get_hwaddr answers for a store's 1st/last byte */
static uint64_t first_vaddr;
static struct qemu_plugin_hwaddr hw;

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb)
{
	(void)id;
	tb_trans_cb = cb;
}

size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb)
{
	(void)tb;
	return 1;
}

struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx)
{
	(void)tb;
	(void)idx;
	return (struct qemu_plugin_insn *)&hw;
}

void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
				      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
				      void *userdata)
{
	(void)insn;
	(void)flags;
	(void)userdata;
	if (rw & QEMU_PLUGIN_MEM_W)
		mem_cb = cb;
}

unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info)
{
	return info & 0xf;
}

bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info)
{
	(void)info;
	return true;
}

struct qemu_plugin_hwaddr *qemu_plugin_get_hwaddr(qemu_plugin_meminfo_t info, uint64_t vaddr)
{
	(void)info;
	hw.phys = vaddr == first_vaddr ? next_phys[0] : next_phys[1];
	return &hw;
}

bool qemu_plugin_hwaddr_is_io(const struct qemu_plugin_hwaddr *haddr)
{
	(void)haddr;
	return false;
}

uint64_t qemu_plugin_hwaddr_phys_addr(const struct qemu_plugin_hwaddr *haddr)
{
	return haddr->phys;
}

void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata)
{
	(void)id;
	(void)cb;
	(void)userdata;
}

void qemu_plugin_outs(const char *string)
{
	fputs(string, stderr);
}

/* ---- the fake guest ---- */

#define BAR   0xfe000000ull
#define SHIFT 0x1000000ull /* what QEMU 7.2 adds to RAM addresses here */

static struct ooh_pmldev_header *hdr;
static struct ooh_pmldev_entry *rings;
static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL line %d: ", __LINE__);                               \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* A guest store of 2^shift bytes at vaddr, to guest-physical gpa. */
static void store(unsigned int cpu, uint64_t vaddr, uint64_t gpa, unsigned int shift)
{
	uint64_t size = 1ull << shift;

	first_vaddr = vaddr;
	next_phys[0] = gpa + SHIFT;
	next_phys[1] = ((gpa + size - 1) & ~0xfffull) + 0x1000 * 7 + SHIFT; /* some other frame */
	mem_cb(cpu, shift, vaddr, NULL);
}

static void bar_store(unsigned int cpu, uint64_t offset)
{
	first_vaddr = 0xffffc90000000000ull + offset;
	next_phys[0] = BAR + offset; /* the device's block comes first: no shift */
	mem_cb(cpu, 3, first_vaddr, NULL);
}

static int call(unsigned int cpu, int slot, uint32_t cmd, uint32_t arg, uint64_t arg64)
{
	struct ooh_pmldev_vcpu *v = &hdr->vcpu[slot];

	v->cmd = cmd;
	v->arg = arg;
	v->arg64 = arg64;
	v->doorbell++;
	bar_store(cpu, offsetof(struct ooh_pmldev_header, vcpu) + slot * sizeof(*v) +
			       offsetof(struct ooh_pmldev_vcpu, doorbell));
	return v->ack == v->doorbell ? v->status : -9999;
}

static struct ooh_pmldev_entry *ring_at(int slot, uint64_t i)
{
	return &rings[slot * hdr->ring_entries + (i & (hdr->ring_entries - 1))];
}

int main(int argc, char **argv)
{
	char path[] = "/tmp/qemu-pml-test-XXXXXX";
	char arg[64], *args[1] = {arg};
	qemu_info_t info = {.target_name = "x86_64", .version = {1, 1}, .system_emulation = true};
	int (*install)(qemu_plugin_id_t, const qemu_info_t *, int, char **);
	struct ooh_pmldev_vcpu *v0, *v1;
	uint64_t i, before;
	void *so, *shm;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s libqemu_pml.so\n", argv[0]);
		return 2;
	}
	fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, 16 << 20))
		return 1;
	shm = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	so = dlopen(argv[1], RTLD_NOW);
	if (!so || shm == MAP_FAILED) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	install = (int (*)(qemu_plugin_id_t, const qemu_info_t *, int, char **))dlsym(
		so, "qemu_plugin_install");
	CHECK(install && dlsym(so, "qemu_plugin_version") &&
		      *(int *)dlsym(so, "qemu_plugin_version") == 1,
	      "plugin symbols");
	snprintf(arg, sizeof(arg), "shm=%s", path);
	CHECK(install(1, &info, 1, args) == 0, "install");
	unlink(path);
	tb_trans_cb(1, NULL);
	CHECK(mem_cb != NULL, "store callback registered");

	hdr = shm;
	CHECK(hdr->magic == OOH_PMLDEV_MAGIC && hdr->ring_entries >= 1024, "device header written");
	rings = (struct ooh_pmldev_entry *)((char *)shm + hdr->ring_offset);
	v0 = &hdr->vcpu[0];
	v1 = &hdr->vcpu[1];

	/* Doorbells only count once the guest said where the BAR is. */
	CHECK(call(0, 0, OOH_PMLDEV_CMD_IDENT, 0, 0) == -9999, "doorbell before bar_gpa");
	hdr->bar_gpa = BAR;
	/* vCPU 1 is guest CPU 0 and vice versa: slots follow the guest. */
	CHECK(call(1, 0, OOH_PMLDEV_CMD_IDENT, 0, 0) == 0 && v0->bound, "IDENT");
	CHECK(call(0, 1, OOH_PMLDEV_CMD_IDENT, 1, 0) == 0 && v1->bound, "IDENT 1");
	CHECK(call(0, 1, OOH_PMLDEV_CMD_IDENT, 5, 0) != 0, "IDENT with a wrong CPU");
	CHECK(call(0, 1, 99, 0, 0) != 0, "unknown command");

	/* CALIBRATE: a store to GPA 0x5000, then its true address. */
	store(1, 0xffff888000005000ull, 0x5000, 3);
	CHECK(call(1, 0, OOH_PMLDEV_CMD_CALIBRATE, 0, 0x5000) == 0, "CALIBRATE");

	/* Nothing is logged while the mode is off. */
	store(1, 0x10000, 0x9000, 3);
	CHECK(call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0) == 0 && v0->head == 0,
	      "logged with mode off");

	/* SPML: first write per page after arming, corrected GPA, the tag. */
	v0->tag = 7;
	v0->mode = OOH_PMLDEV_LOG_GPA;
	store(1, 0x10000, 0x9000, 3);
	store(1, 0x10008, 0x9008, 3);
	store(1, 0x20000, 0x9010, 2); /* same frame through another mapping */
	CHECK(v0->head == 0, "entries stay in the 512-entry buffer until a flush");
	CHECK(call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0) == 0, "FLUSH_REARM");
	CHECK(v0->head == 1 && v0->rearm_head == 1, "one entry per page: head %llu",
	      (unsigned long long)v0->head);
	CHECK(ring_at(0, 0)->gpa == 0x9000 && ring_at(0, 0)->tag == 7 && ring_at(0, 0)->gva == 0,
	      "entry: gpa %#llx tag %u", (unsigned long long)ring_at(0, 0)->gpa,
	      ring_at(0, 0)->tag);
	/* Re-armed: the same page is logged again. */
	store(1, 0x10000, 0x9000, 3);
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v0->head == 2 && v0->rearm_head == 2, "logged again after re-arm");

	/* Bar stores other than doorbells are never logged. */
	bar_store(1, 64);
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v0->head == 2, "device memory logged");

	/* A store across a page boundary logs both pages. */
	store(1, 0x30ffc, 0x40ffc, 3);
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v0->head == 4, "straddling store: %llu entries", (unsigned long long)(v0->head - 2));

	/* FLUSH moves the buffer into the ring without a re-arm point. */
	before = v0->head;
	store(1, 0x60000, 0x60000, 3);
	CHECK(call(1, 0, OOH_PMLDEV_CMD_FLUSH, 0, 0) == 0 && v0->head == before + 1 &&
		      v0->rearm_head == before,
	      "FLUSH");
	store(1, 0x60000, 0x60000, 3); /* still armed off: not logged again */
	call(1, 0, OOH_PMLDEV_CMD_FLUSH, 0, 0);
	CHECK(v0->head == before + 1, "FLUSH re-armed a page");
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);

	/* The buffer flushes itself when full (the PML-full exit). */
	before = v0->head;
	for (i = 0; i < OOH_PMLDEV_BUFFER_ENTRIES; i++)
		store(1, 0x100000 + i * 4096, 0x100000 + i * 4096, 3);
	CHECK(v0->head == before + OOH_PMLDEV_BUFFER_ENTRIES && v0->rearm_head == before,
	      "full buffer flushed without a re-arm point");
	v0->tail = v0->head;

	/* A full ring drops entries and counts them, never silently. */
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	before = v0->lost;
	for (i = 0; i < hdr->ring_entries + 600; i++)
		store(1, 0x400000 + i * 4096, 0x400000 + i * 4096, 3);
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v0->head - v0->tail == hdr->ring_entries, "ring filled");
	CHECK(v0->lost - before == 600, "lost %llu, want 600",
	      (unsigned long long)(v0->lost - before));
	v0->tail = v0->head;

	/* EPML: keyed by (tag, GVA): a frame written first through another
	 * address does not hide the task's write; the GVA is recorded. */
	v0->mode = OOH_PMLDEV_LOG_GPA | OOH_PMLDEV_LOG_GVA;
	v0->tag = 9;
	before = v0->head;
	store(1, 0xffff888000777000ull, 0x777000, 3); /* kernel zeroes the frame */
	store(1, 0x7f0000001000ull, 0x777000, 3);     /* the task writes it */
	store(1, 0x7f0000001008ull, 0x777008, 3);     /* again: not logged */
	v0->tag = 10;
	store(1, 0x7f0000001000ull, 0x777000, 3); /* another tracker, same GVA */
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v0->head - before == 3, "EPML entries: %llu, want 3",
	      (unsigned long long)(v0->head - before));
	CHECK(ring_at(0, before + 1)->gva == 0x7f0000001000ull && ring_at(0, before + 1)->tag == 9,
	      "EPML entry carries the GVA");
	before = v0->head;
	store(1, 0x7f0000001000ull, 0x777000, 3);
	call(1, 0, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v0->head - before == 1, "EPML re-armed");

	/* Each vCPU logs into the ring of the guest CPU it is bound to. */
	v1->mode = OOH_PMLDEV_LOG_GPA;
	v1->tag = 3;
	store(0, 0x50000, 0x50000, 3);
	call(0, 1, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	CHECK(v1->head == 1 && ring_at(1, 0)->tag == 3, "slot 1's ring");

	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("qemu-pml plugin: all checks passed\n");
	return 0;
}
