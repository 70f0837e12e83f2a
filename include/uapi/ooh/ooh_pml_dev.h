/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The emulated PML device: the layout of the shared memory that QEMU exposes
 * to the guest as ivshmem BAR 2 and that the qemu-pml TCG plugin maps on the
 * host. The plugin plays the hypervisor; a guest store to a vCPU slot's
 * `doorbell` is its hypercall (the plugin sees the store synchronously, on
 * the storing vCPU, before the next guest instruction runs).
 */
#ifndef _UAPI_OOH_PML_DEV_H
#define _UAPI_OOH_PML_DEV_H

#include <linux/types.h>

#define OOH_PMLDEV_MAGIC	  0x314c4d50484f4f00ull /* "\0OOHPML1" */
#define OOH_PMLDEV_VERSION	  1
#define OOH_PMLDEV_MAX_VCPUS	  64
#define OOH_PMLDEV_BUFFER_ENTRIES 512 /* the per-vCPU PML buffer, as in VMX */
#define OOH_PMLDEV_PAGE_SHIFT	  12

/* ooh_pmldev_vcpu.mode */
#define OOH_PMLDEV_LOG_GPA 1u /* SPML: log guest-physical addresses */
#define OOH_PMLDEV_LOG_GVA 2u /* EPML: also log guest-virtual addresses */

/* ooh_pmldev_vcpu.cmd */
#define OOH_PMLDEV_CMD_IDENT 1u /* arg = guest CPU number; binds this slot to the storing vCPU */
/*
 * Flush every vCPU's PML buffer into its ring, record each ring's head in
 * rearm_head, then clear every dirty bit: the next write to any page is
 * logged again. Entries up to rearm_head belong to the epoch that ends here.
 */
#define OOH_PMLDEV_CMD_FLUSH_REARM 2u
/*
 * arg64 = the guest-physical address of the page this vCPU last stored to
 * outside the device (with interrupts off in between). QEMU 7.2's plugin API
 * returns RAM addresses shifted by the RAM block's place among all blocks;
 * the plugin learns the correction from this.
 */
#define OOH_PMLDEV_CMD_CALIBRATE 3u
/* Flush every vCPU's PML buffer into its ring (like any VM exit on VMX). */
#define OOH_PMLDEV_CMD_FLUSH 4u

struct ooh_pmldev_entry {
	__u64 gpa; /* page-aligned guest-physical address */
	__u64 gva; /* page-aligned guest-virtual address (EPML), else 0 */
	__u32 tag; /* the slot's tag when the write was logged */
	__u32 flags;
};

/* One cache line per field group; guest CPU g uses slot g. */
struct ooh_pmldev_vcpu {
	/* guest -> plugin */
	__u32 mode; /* OOH_PMLDEV_LOG_* or 0 */
	__u32 tag;  /* stamped on every entry logged by this vCPU */
	__u32 cmd;
	__u32 arg;
	__u64 doorbell; /* the store to this field runs cmd */
	__u64 tail;	/* guest: entries consumed from this slot's ring */
	__u64 arg64;
	__u64 pad0[3];
	/* plugin -> guest */
	__u64 ack;	  /* = doorbell once cmd has run */
	__s32 status;	  /* 0 or -errno of the last cmd */
	__u32 bound;	  /* 1 once IDENT bound a vCPU to the slot */
	__u64 head;	  /* entries produced into this slot's ring */
	__u64 rearm_head; /* head at the last FLUSH_REARM */
	__u64 lost;	  /* entries dropped because this ring was full */
	__u64 logged;	  /* entries logged (statistics) */
	__u64 pad1[2];
};

struct ooh_pmldev_header {
	__u64 magic;	    /* plugin: OOH_PMLDEV_MAGIC */
	__u32 version;	    /* plugin: OOH_PMLDEV_VERSION */
	__u32 nr_slots;	    /* plugin: OOH_PMLDEV_MAX_VCPUS */
	__u64 shm_size;	    /* plugin: bytes */
	__u64 ring_offset;  /* plugin: offset of slot 0's ring */
	__u64 ring_entries; /* plugin: entries per slot ring (power of two) */
	__u64 bar_gpa;	    /* guest: where BAR 2 is mapped, so the plugin
				 * can tell its doorbell stores from others */
	__u64 rearms;	    /* plugin: FLUSH_REARM served */
	__u64 pad[57];
	/* at offset 512 */
	struct ooh_pmldev_vcpu vcpu[OOH_PMLDEV_MAX_VCPUS];
	/* rings at ring_offset: slot s's ring is entries
	 * [s * ring_entries, (s + 1) * ring_entries) */
};

#endif /* _UAPI_OOH_PML_DEV_H */
