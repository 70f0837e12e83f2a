/* SPDX-License-Identifier: MIT */
/*
 * ooh_spml_abi.h - the guest <-> Xen Shadow-PML (SPML) ABI, version 1.
 *
 * This is the one definition of the interface between the Xen SPML series
 * (hypervisor/xen/patches/) and a guest kernel module (guest-kmod/). It is
 * plain C with fixed-width types so both sides include it unchanged: Xen
 * copies it to xen/include/public/hvm/ooh_spml.h, the guest module includes
 * it directly. MIT, like Xen's other public headers, so that both a GPL
 * guest module and the hypervisor can carry it.
 *
 * ------------------------------------------------------------------------
 * 1. What SPML gives the guest
 * ------------------------------------------------------------------------
 * Intel PML logs the guest-physical address of a 4 KiB page the first time
 * a vCPU writes it after its EPT dirty (D) bit was cleared. Xen uses PML for
 * dom0's log-dirty (live migration). SPML lets the guest itself consume the
 * same log: the guest registers one ring per vCPU, "arms" the guest frames
 * (GFNs) it wants to watch, and Xen copies every logged GFN of an armed page
 * into the ring of the vCPU that wrote it, with a tag the guest chose for
 * that vCPU (e.g. the id of the tracker whose process runs there).
 *
 * ------------------------------------------------------------------------
 * 2. Hypercall
 * ------------------------------------------------------------------------
 *   HYPERVISOR_hvm_op(OOH_HVMOP_spml, struct ooh_spml_op *arg)
 *
 * __HYPERVISOR_hvm_op is hypercall 34. Its sub-op number is chosen at the
 * top of the 8-bit space: upstream numbers HVMOP sub-ops densely from 0
 * (0..25 in Xen 4.17 through 4.20, HVMOP_altp2m = 25 the last), and old
 * Xen (<= 4.4) masked the sub-op with HVMOP_op_mask = 0xff, so a value
 * <= 0xff stays what it is under either scheme. The research prototype's
 * VCPUOP 14/15 (upstream since 4.18) and domctl 82 (get_cpu_policy in
 * 4.19) are NOT used. As a second guard, every call carries a magic and
 * version, and OOH_SPML_CMD_QUERY answers with a magic: a guest must issue
 * QUERY first and only go on if the returned magic matches. A Xen without
 * the series answers -ENOSYS (unknown sub-op).
 *
 * Only an HVM/PVH guest may call it, and only on itself (no domid: the
 * target is always the calling domain). Xen checks XSM hook
 * xsm_hvm_param(XSM_TARGET, d, OOH_HVMOP_spml) (FLASK: hvm:hvmctl).
 *
 * Return values: 0 or a negative Xen errno (same numbers as Linux for the
 * ones used here): -ENOSYS (no SPML in this Xen), -EOPNOTSUPP (no PML/EPT
 * A/D on this host, or a shadow-paging guest), -EINVAL (bad argument,
 * bad magic/version, reserved field non-zero), -ENOENT (no ring registered
 * on that vCPU), -EEXIST (ring already registered), -EBUSY (vCPU is not
 * the caller where the command requires it), -EFAULT, -ENOMEM, -EPERM
 * (XSM).
 *
 * ------------------------------------------------------------------------
 * 3. Arming, logging, re-arming: exact semantics
 * ------------------------------------------------------------------------
 * A GFN is ARMED from the moment an OOH_SPML_CMD_REARM covering it returns
 * until the first write to it by any vCPU of the domain. Xen implements
 * arming with the p2m type it already uses for log-dirty (ram_rw ->
 * ram_logdirty: EPT D bit clear, and write-protected where PML cannot log,
 * i.e. superpages, which are split on the first write). When REARM returns,
 * the EPT TLBs of all vCPUs have been invalidated: every later write to an
 * armed page is logged. (The research prototype never re-armed: it logged
 * each page once per enable. Re-arming is the fix.)
 *
 * What is logged (one entry each, in the ring of vCPU V):
 *  a) A write by vCPU V to an armed page, logged by PML and copied out
 *     when V's 512-entry PML buffer is flushed (PML-full exit, any VM exit
 *     that flushes, CMD_FLUSH, log-dirty's own flush, disabling PML).
 *  b) A write by vCPU V to an armed page that faulted instead (superpage,
 *     or PML unavailable on that vCPU for a moment): logged at the EPT
 *     violation, before the page is made writable.
 *  c) A write into the domain's memory made by Xen or the device model on
 *     the guest's behalf (emulation, hvm_copy_to_guest, grant copies,
 *     XEN_DMOP_modified_memory): logged in the ring of vCPU 0, or of the
 *     current vCPU if the write happens in that vCPU's context, with tag
 *     OOH_SPML_TAG_EXTERNAL, whether or not the page was armed (Xen does
 *     not look up the p2m type there; such writes are rare and
 *     over-reporting is harmless).
 *  Entries (a) and (b) carry V's current tag, or OOH_SPML_TAG_NONE while
 *  logging is disabled on V: a write to an armed page always disarms it,
 *  so it is always reported, never dropped because V was not "tracking".
 *  A page is logged at most once per arming by (a)/(b); a page that was
 *  not armed is not logged by (a)/(b) (its D bit is already set).
 *
 * What is NOT logged: reads; writes to pages that are not armed (except
 * (c)); writes by other domains to the guest's memory through foreign or
 * grant mappings that do not go through paging_mark_dirty (e.g. a
 * backend's DMA straight into a granted page): the guest module must treat
 * pages it grants for write access as dirty itself.
 *
 * Coexistence with dom0's log-dirty (live migration). Log-dirty and SPML
 * share the p2m type and the PML buffers; Xen keeps both correct:
 *  - every flushed PML entry feeds BOTH consumers: log-dirty's bitmap (if
 *    log-dirty is on) and the guest ring (if the page was armed and a ring
 *    is registered); neither swallows the other's entries;
 *  - log-dirty arming pages (enable, CLEAN/PEEK rounds) only produces extra
 *    guest entries (over-report, harmless); a guest REARM only produces
 *    extra log-dirty bits;
 *  - when log-dirty is switched off while any SPML ring is registered, Xen
 *    keeps PML on and does NOT convert ram_logdirty pages back to ram_rw
 *    (that would silently disarm the guest's pages); it does so only once
 *    the last ring is unregistered, and then the guest no longer cares;
 *  - SPML never switches PML off while log-dirty is on.
 *  After a migration the destination Xen has no rings registered (SPML
 *  state is not migrated): the guest must re-register and re-arm on resume
 *  and treat everything as dirty once (Linux: a PM/Xen resume notifier).
 *
 * ------------------------------------------------------------------------
 * 4. Ring (one per vCPU), overflow, notification
 * ------------------------------------------------------------------------
 * The guest provides 1 + 2^k frames (k = 0..8): frame 0 holds struct
 * ooh_spml_ring_header, frames 1..2^k hold the entry array, so the ring
 * holds 2^k * 256 entries (256 .. 65536). Xen maps the frames (takes a
 * writable type reference on each) until UNREGISTER or domain death; the
 * guest must not balloon them out meanwhile.
 *
 * Producer/consumer: Xen writes entries, then (write barrier) bumps
 * header->prod; the guest reads prod, (read barrier) reads entries up to
 * prod, then (full barrier) writes header->cons. Both indices are
 * free-running u32; entry i lives at slot i & (capacity - 1). The ring is
 * full when prod - cons == capacity. Xen never writes cons; the guest
 * never writes prod, overflow or logged.
 *
 * Overflow is counted and reported, never silent: an entry that does not
 * fit increments header->overflow (a free-running u64 Xen never resets),
 * sets OOH_SPML_RF_OVERFLOW in header->flags and raises the VIRQ. The
 * entry's page is NOT re-armed by Xen. A guest that sees overflow advance
 * since its last look has lost entries of unknown tag on that vCPU: it must
 * report every tracker that could have run on that vCPU as "tracking lost"
 * (whole ranges dirty), then clear the flag. Xen does not fall back to
 * anything quieter.
 *
 * Notification: Xen raises the per-vCPU VIRQ OOH_SPML_VIRQ on vCPU V when,
 * after a copy-out, V's ring holds >= header->notify_threshold entries, or
 * on overflow, and OOH_SPML_RF_NEED_DRAIN was clear; it sets that flag
 * with the VIRQ. header->flags is the one word both sides write: both
 * use atomic read-modify-write on it (Xen sets bits, the guest clears
 * them). The guest clears OOH_SPML_RF_NEED_DRAIN after draining, then
 * re-reads prod and drains again if it moved (a copy-out racing with the
 * clear would otherwise go unnotified). Bind it per vCPU with
 * EVTCHNOP_bind_virq { .virq = OOH_SPML_VIRQ, .vcpu = V } (Linux:
 * bind_virq_to_irqhandler(OOH_SPML_VIRQ, cpu, ...)). QUERY returns the VIRQ
 * number actually used, which is authoritative.
 *
 * A collect (epoch boundary) on the guest side is: CMD_FLUSH with
 * OOH_SPML_VCPU_ALL, drain every ring, CMD_REARM the drained GFNs, and only
 * then copy page contents. A write racing with the collect is reported in
 * this epoch or the next, never neither.
 */
#ifndef OOH_SPML_ABI_H
#define OOH_SPML_ABI_H

#if defined(__XEN__) || defined(__XEN_TOOLS__)
/* Xen's public headers get uintN_t from xen/types.h or <stdint.h>. */
#elif defined(__KERNEL__)
#include <linux/types.h>
#else
#include <stdint.h>
#endif

/* HVMOP sub-op (see 2.): top of the 8-bit sub-op space. */
#define OOH_HVMOP_spml              0xf0

/* Per-vCPU VIRQ: VIRQ_ARCH_7. x86 upstream uses only VIRQ_ARCH_0 (MCA);
 * the series makes this one per-vCPU in arch_virq_is_global(). */
#define OOH_SPML_VIRQ               23

#define OOH_SPML_MAGIC              0x4c4d5053u /* "SPML" little-endian */
#define OOH_SPML_RING_MAGIC         0x474e4952u /* "RING" little-endian */
#define OOH_SPML_VERSION            1

/* Commands (struct ooh_spml_op.cmd). */
#define OOH_SPML_CMD_QUERY          0 /* out: u.query; always allowed */
#define OOH_SPML_CMD_REGISTER_RING  1 /* u.ring; vcpu = any of the domain */
#define OOH_SPML_CMD_UNREGISTER     2 /* vcpu = any; flushes first */
#define OOH_SPML_CMD_ENABLE         3 /* u.enable; vcpu must be the caller */
#define OOH_SPML_CMD_DISABLE        4 /* vcpu must be the caller */
#define OOH_SPML_CMD_FLUSH          5 /* vcpu = caller, any, or VCPU_ALL */
#define OOH_SPML_CMD_REARM          6 /* u.rearm; domain-wide */

/* ooh_spml_op.vcpu special values. */
#define OOH_SPML_VCPU_SELF          0xffffffffu /* the calling vCPU */
#define OOH_SPML_VCPU_ALL           0xfffffffeu /* CMD_FLUSH only */

/* Entry tags. Guest-chosen tags are 1 .. 0xfffffffd. */
#define OOH_SPML_TAG_NONE           0u          /* logging disabled on vCPU */
#define OOH_SPML_TAG_EXTERNAL       0xffffffffu /* written by Xen / the DM */
#define OOH_SPML_TAG_RESERVED       0xfffffffeu

/* Ring geometry. */
#define OOH_SPML_PAGE_SIZE          4096u
#define OOH_SPML_ENTRIES_PER_FRAME  (OOH_SPML_PAGE_SIZE / 16u)
#define OOH_SPML_MAX_DATA_FRAMES    256u  /* 2^8 */
#define OOH_SPML_MAX_RING_FRAMES    (1u + OOH_SPML_MAX_DATA_FRAMES)

/* header->flags (Xen sets, guest clears). */
#define OOH_SPML_RF_NEED_DRAIN      (1u << 0)
#define OOH_SPML_RF_OVERFLOW        (1u << 1)

/* query.features */
#define OOH_SPML_F_EXTERNAL_WRITES  (1u << 0) /* logs (c) of section 3 */
#define OOH_SPML_F_LOGDIRTY_SAFE    (1u << 1) /* coexists with log-dirty */

/* rearm.flags */
#define OOH_SPML_REARM_ALL          (1u << 0) /* arm every ram_rw GFN; gfns
                                                 and nr must be 0 */

/* One logged write. 16 bytes, naturally aligned. */
struct ooh_spml_entry {
	uint64_t gfn;       /* guest frame number (GPA >> 12) */
	uint32_t tag;       /* vCPU's tag at logging time, or a TAG_* above */
	uint32_t flags;     /* OOH_SPML_EF_*; other bits 0 */
};
#define OOH_SPML_EF_FAULT           (1u << 0) /* (b): logged at EPT violation */

/*
 * Frame 0 of a ring. Xen initialises it at REGISTER_RING (magic, version,
 * capacity; prod = cons = 0; counters 0) after validating the frames.
 * prod and cons sit on their own 64-byte lines.
 */
struct ooh_spml_ring_header {
	uint32_t magic;             /* OOH_SPML_RING_MAGIC */
	uint32_t version;           /* OOH_SPML_VERSION */
	uint32_t capacity;          /* entries, power of two */
	uint32_t notify_threshold;  /* guest may change it; 0 = capacity/2 */
	uint32_t flags;             /* OOH_SPML_RF_* */
	uint32_t tag;               /* mirror of the vCPU's tag (read-only) */
	uint64_t overflow;          /* entries dropped, free-running */
	uint64_t logged;            /* entries produced, free-running */
	uint8_t  pad0[64 - 40];
	uint32_t prod;              /* written by Xen only */
	uint8_t  pad1[64 - 4];
	uint32_t cons;              /* written by the guest only */
	uint8_t  pad2[64 - 4];
};

struct ooh_spml_query {
	uint32_t magic;             /* OUT: OOH_SPML_MAGIC */
	uint32_t version;           /* OUT: highest version Xen speaks */
	uint32_t features;          /* OUT: OOH_SPML_F_* */
	uint32_t virq;              /* OUT: the per-vCPU VIRQ */
	uint32_t max_data_frames;   /* OUT: OOH_SPML_MAX_DATA_FRAMES */
	uint32_t pml_entries;       /* OUT: hardware PML buffer entries (512) */
};

struct ooh_spml_ring {
	uint64_t frames;            /* IN: guest VA of uint64_t gfn[nr_frames]:
	                               gfn[0] = header, then data frames */
	uint32_t nr_frames;         /* IN: 1 + 2^k, k = 0..8 */
	uint32_t notify_threshold;  /* IN: 0 = capacity/2 */
};

struct ooh_spml_enable {
	uint32_t tag;               /* IN: 1 .. 0xfffffffd */
	uint32_t pad;               /* must be 0 */
};

/*
 * REARM: arm gfns[done .. nr). Xen may preempt and continue transparently
 * (it writes the progress back to 'done' and restarts the hypercall); the
 * guest sets done = 0. GFNs that are not ordinary RAM (MMIO, grant, paged
 * out, ioreq) are skipped and counted in 'skipped'; they are not armed and
 * the guest must treat them as always dirty.
 */
struct ooh_spml_rearm {
	uint64_t gfns;              /* IN: guest VA of uint64_t gfn[nr] */
	uint32_t nr;                /* IN */
	uint32_t flags;             /* IN: OOH_SPML_REARM_* */
	uint32_t done;              /* IN/OUT: 0 on the first call */
	uint32_t skipped;           /* OUT */
};

struct ooh_spml_op {
	uint32_t magic;             /* IN: OOH_SPML_MAGIC */
	uint16_t version;           /* IN: OOH_SPML_VERSION */
	uint16_t cmd;               /* IN: OOH_SPML_CMD_* */
	uint32_t vcpu;              /* IN: vCPU id or OOH_SPML_VCPU_* */
	uint32_t pad;               /* must be 0 */
	union {
		struct ooh_spml_query query;
		struct ooh_spml_ring ring;
		struct ooh_spml_enable enable;
		struct ooh_spml_rearm rearm;
		uint8_t raw[32];
	} u;
};

/* The layout is ABI: the same on 32- and 64-bit guests and in Xen. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct ooh_spml_entry) == 16, "entry is 16 bytes");
_Static_assert(sizeof(struct ooh_spml_ring_header) == 192, "header size");
_Static_assert(sizeof(struct ooh_spml_op) == 48, "op is 48 bytes");
#endif

#endif /* OOH_SPML_ABI_H */
