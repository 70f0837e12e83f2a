/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interface of the OoH guest module: the hypervisor transports
 * (Xen SPML hypercalls, the QEMU plugin's emulated PML device) behind one
 * set of operations, used by the tracker core in ooh_main.c.
 */
#ifndef OOH_H
#define OOH_H

#include <linux/types.h>

struct ooh_transport;

/* Tag of an entry that may belong to any tracker (SPML trackers only). */
#define OOH_TAG_ALL 0xffffffffu

/* Receives one logged page; called under the core's drain mutex. */
typedef void (*ooh_sink_fn)(void *ctx, u32 tag, u64 gpa, u64 gva);

struct ooh_transport_ops {
	/*
	 * Switches logging on or off for the calling CPU. Called from preempt
	 * notifiers (preemption off, may be in the scheduler): must not sleep.
	 */
	void (*vcpu_enable)(struct ooh_transport *t, int cpu, u32 tag, u32 mode);
	void (*vcpu_disable)(struct ooh_transport *t, int cpu);
	/*
	 * Flushes every vCPU's hardware buffer, then re-arms logging for every
	 * page. Entries logged up to this point are drained by
	 * drain(to_rearm = true). Process context.
	 */
	int (*flush_rearm)(struct ooh_transport *t);
	/*
	 * Optional: moves what the hypervisor buffers per vCPU into the
	 * rings, so the periodic drain sees it. Process context.
	 */
	void (*flush)(struct ooh_transport *t);
	/*
	 * Hands logged entries to @sink: up to the last re-arm point, or all
	 * that are available. Returns true if the hypervisor dropped entries
	 * since the previous call (the caller fails every tracker's epoch).
	 */
	bool (*drain)(struct ooh_transport *t, bool to_rearm, ooh_sink_fn sink, void *ctx);
};

struct ooh_transport {
	const char *name;
	u32 transport_bit; /* OOH_TRANSPORT_* */
	u32 modes;	   /* (1 << OOH_MODE_*) supported */
	const struct ooh_transport_ops *ops;
	void *priv;
};

/* Asks the core to drain soon (e.g. from a "ring filling" interrupt). */
void ooh_kick_drain(void);

/* The core takes the first transport that registers. */
int ooh_register_transport(struct ooh_transport *t);
void ooh_unregister_transport(struct ooh_transport *t);

int ooh_emul_init(void);
void ooh_emul_exit(void);
int ooh_xen_init(void);
void ooh_xen_exit(void);

#endif /* OOH_H */
