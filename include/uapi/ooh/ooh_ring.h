/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The one ABI between the OoH guest module and oohd: the control device
 * (/dev/ooh-ctl) ioctls and the per-tracker ring that the module exports
 * through UIO (map 0 of /dev/uioN, whose sysfs name is OOH_RING_UIO_NAME).
 *
 * One ctl fd holds at most one tracker; closing the fd ends the tracking and
 * removes the tracker's UIO device, so nothing outlives the daemon.
 */
#ifndef _UAPI_OOH_RING_H
#define _UAPI_OOH_RING_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define OOH_CTL_DEVICE	  "/dev/ooh-ctl"
#define OOH_RING_UIO_NAME "ooh-ring"
#define OOH_ABI_VERSION	  1

/* Tracking modes: what the ring entries hold. */
#define OOH_MODE_SPML 1 /* guest-physical page addresses (oohd maps them back) */
#define OOH_MODE_EPML 2 /* guest-virtual page addresses of the target */

/* Transports (bits of ooh_info.transports). */
#define OOH_TRANSPORT_XEN_SPML (1u << 0)
#define OOH_TRANSPORT_EMULATED (1u << 1) /* the QEMU plugin's ivshmem device */

struct ooh_info {
	__u32 size;	    /* in: sizeof(struct ooh_info) */
	__u32 abi_version;  /* out: OOH_ABI_VERSION */
	__u32 transports;   /* out: OOH_TRANSPORT_* present */
	__u32 modes;	    /* out: (1 << OOH_MODE_*) supported */
	char transport[32]; /* out: name of the transport in use */
};

struct ooh_track_req {
	__u32 size; /* in: sizeof(struct ooh_track_req) */
	__u32 mode; /* in: OOH_MODE_SPML or OOH_MODE_EPML */
	__s32 pid;  /* in: target thread-group id (caller's pid ns) */
	/*
	 * in: an fd of /proc/<pid>/mem opened by the caller. Opening it made
	 * the kernel check ptrace_may_access(PTRACE_MODE_ATTACH_FSCREDS) with
	 * every LSM; ptrace_may_access itself is not exported to modules, so
	 * this fd is the caller's proof, and the module checks that it refers
	 * to the target's mm. The module checks the credential part with the
	 * caller's real credentials itself (PTRACE_MODE_ATTACH_REALCREDS).
	 */
	__s32 mem_fd;
	__u32 ring_entries; /* in: power of two, 0 = default (65536) */
	__u32 uio_index;    /* out: N of /dev/uioN holding the ring */
	__u32 ring_bytes;   /* out: size of UIO map 0 */
	__u32 threads;	    /* out: threads attached */
	__u64 reserved[4];
};

/*
 * Collect: re-arm logging (every page's next write is logged again), then
 * move every entry logged before the re-arm into the ring and publish the
 * boundary in ooh_ring_header.collect_head. Entries past that boundary belong
 * to the next epoch.
 */
struct ooh_collect_req {
	__u32 size;	    /* in: sizeof(struct ooh_collect_req) */
	__u32 flags;	    /* reserved, 0 */
	__u64 collect_head; /* out: same as the header's */
	__u64 lost_events;  /* out: same as the header's */
	__u64 reserved[2];
};

#define OOH_IOC_INFO	_IOWR('O', 0x01, struct ooh_info)
#define OOH_IOC_TRACK	_IOWR('O', 0x02, struct ooh_track_req)
#define OOH_IOC_COLLECT _IOWR('O', 0x03, struct ooh_collect_req)

#define OOH_RING_MAGIC		 0x52484f4fu /* "OOHR" */
#define OOH_RING_DEFAULT_ENTRIES 65536u
#define OOH_RING_MAX_ENTRIES	 (1u << 22)

/*
 * UIO map 0: this header in the first page, then `capacity` __u64 entries,
 * each a page-aligned address (GPA in SPML mode, GVA in EPML mode). Entry
 * number n (counting from 0 since tracking began) is at index n % capacity.
 */
struct ooh_ring_header {
	__u32 magic;	      /* OOH_RING_MAGIC */
	__u32 abi_version;    /* OOH_ABI_VERSION */
	__u32 mode;	      /* OOH_MODE_* */
	__u32 page_shift;     /* guest page size */
	__u64 capacity;	      /* entries, a power of two */
	__u64 entries_offset; /* bytes from the start of the map */
	__u64 head;	      /* module: entries produced so far */
	__u64 collect_head;   /* module: boundary of the last collect */
	__u64 tail;	      /* oohd: entries consumed so far */
	/*
	 * module: count of events where entries were dropped (this ring full,
	 * the hypervisor's buffer full, a thread of the target that logged
	 * unattached). Never silent: when it moves, the consumer must treat
	 * the whole address space as written for that epoch.
	 */
	__u64 lost_events;
	__u64 collects; /* module: collects served */
	__s32 pid;	/* target tgid */
	__u32 threads;	/* threads attached */
};

#endif /* _UAPI_OOH_RING_H */
