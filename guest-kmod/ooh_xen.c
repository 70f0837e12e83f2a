// SPDX-License-Identifier: GPL-2.0
/*
 * Transport for Xen Shadow PML, with the hypercall and ring ABI of
 * include/uapi/ooh/ooh_spml_abi.h: one ring per vCPU registered with Xen,
 * logging switched per vCPU with a tag (the tracker), and a collect that is
 * FLUSH(all), drain every ring, REARM.
 *
 * Rings are drained by the core's periodic work, and at once when Xen
 * raises the per-vCPU VIRQ (ring past its threshold, or overflow); a ring
 * that overflows is reported by Xen and fails the epoch either way.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include <linux/interrupt.h>

#include <xen/events.h>
#include <xen/xen.h>
#include <xen/page.h>
#include <xen/xen-ops.h>
#include <asm/xen/hypercall.h>

#include <ooh/ooh_ring.h>
#include <ooh/ooh_spml_abi.h>

#include "ooh.h"

/* 2^4 data frames: 4096 entries per vCPU. */
#define OOH_XEN_DATA_ORDER  4
#define OOH_XEN_DATA_FRAMES (1u << OOH_XEN_DATA_ORDER)

struct ooh_xen_ring {
	struct page *pages[1 + OOH_XEN_DATA_FRAMES];
	struct ooh_spml_ring_header *hdr;
	u64 overflow_seen;
	bool registered;
	int irq; /* of the VIRQ on this CPU, or <= 0 */
};

struct ooh_xen_entry {
	u32 tag;
	u64 gfn;
};

struct ooh_xen {
	struct ooh_xen_ring *rings; /* nr_cpu_ids */
	/* entries drained at the last collect, handed out by drain(true) */
	struct ooh_xen_entry *pending;
	size_t nr_pending, cap_pending;
	bool pending_lost;
	/* every frame drained since the last REARM: what REARM must re-arm */
	u64 *rearm;
	size_t nr_rearm, cap_rearm;
	bool rearm_all; /* remembering failed: re-arm everything */
	struct ooh_transport transport;
};

static struct ooh_xen *ooh_xen_dev;

static irqreturn_t ooh_xen_virq(int irq, void *dev_id)
{
	ooh_kick_drain();
	return IRQ_HANDLED;
}

static int ooh_spml(u16 cmd, u32 vcpu, struct ooh_spml_op *op)
{
	op->magic = OOH_SPML_MAGIC;
	op->version = OOH_SPML_VERSION;
	op->cmd = cmd;
	op->vcpu = vcpu;
	op->pad = 0;
	return HYPERVISOR_hvm_op(OOH_HVMOP_spml, op);
}

static void ooh_xen_enable(struct ooh_transport *t, int cpu, u32 tag, u32 mode)
{
	struct ooh_spml_op op = {};

	op.u.enable.tag = tag;
	ooh_spml(OOH_SPML_CMD_ENABLE, OOH_SPML_VCPU_SELF, &op);
}

static void ooh_xen_disable(struct ooh_transport *t, int cpu)
{
	struct ooh_spml_op op = {};

	ooh_spml(OOH_SPML_CMD_DISABLE, OOH_SPML_VCPU_SELF, &op);
}

static struct ooh_spml_entry *ooh_xen_slot(struct ooh_xen_ring *r, u32 i)
{
	u32 idx = i & (r->hdr->capacity - 1);
	struct ooh_spml_entry *frame = page_address(r->pages[1 + idx / OOH_SPML_ENTRIES_PER_FRAME]);

	return &frame[idx % OOH_SPML_ENTRIES_PER_FRAME];
}

static void ooh_xen_remember(struct ooh_xen *x, u64 gfn)
{
	if (x->rearm_all)
		return;
	if (x->nr_rearm == x->cap_rearm) {
		size_t cap = x->cap_rearm ? x->cap_rearm * 2 : 4096;
		u64 *p = kvmalloc_array(cap, sizeof(*p), GFP_KERNEL);

		if (!p) {
			x->rearm_all = true;
			return;
		}
		if (x->rearm) {
			memcpy(p, x->rearm, x->nr_rearm * sizeof(*p));
			kvfree(x->rearm);
		}
		x->rearm = p;
		x->cap_rearm = cap;
	}
	x->rearm[x->nr_rearm++] = gfn;
}

/*
 * Moves everything Xen produced on every ring to @sink; true if any was lost.
 * A drained page stays disarmed until the next REARM: remember it.
 */
static bool ooh_xen_drain_rings(struct ooh_xen *x, ooh_sink_fn sink, void *ctx)
{
	bool lost = false;
	int cpu;

	for_each_possible_cpu(cpu)
	{
		struct ooh_xen_ring *r = &x->rings[cpu];
		u32 prod, cons;
		u64 overflow;

		if (!r->registered)
			continue;
		do {
			prod = smp_load_acquire(&r->hdr->prod);
			for (cons = r->hdr->cons; cons != prod; cons++) {
				struct ooh_spml_entry *e = ooh_xen_slot(r, cons);

				ooh_xen_remember(x, e->gfn);
				sink(ctx, e->tag, e->gfn << PAGE_SHIFT, 0);
			}
			smp_mb();
			WRITE_ONCE(r->hdr->cons, cons);
			/* Clear, then look again: a copy-out racing the clear. */
			atomic_andnot(OOH_SPML_RF_NEED_DRAIN, (atomic_t *)&r->hdr->flags);
		} while (smp_load_acquire(&r->hdr->prod) != cons);
		overflow = READ_ONCE(r->hdr->overflow);
		if (overflow != r->overflow_seen) {
			r->overflow_seen = overflow;
			atomic_andnot(OOH_SPML_RF_OVERFLOW, (atomic_t *)&r->hdr->flags);
			lost = true;
		}
	}
	return lost;
}

static void ooh_xen_keep(void *ctx, u32 tag, u64 gpa, u64 gva)
{
	struct ooh_xen *x = ctx;

	if (x->nr_pending == x->cap_pending) {
		size_t cap = x->cap_pending ? x->cap_pending * 2 : 4096;
		struct ooh_xen_entry *p = kvmalloc_array(cap, sizeof(*p), GFP_KERNEL);

		if (!p) {
			x->pending_lost = true; /* reported, never silent */
			return;
		}
		if (x->pending) {
			memcpy(p, x->pending, x->nr_pending * sizeof(*p));
			kvfree(x->pending);
		}
		x->pending = p;
		x->cap_pending = cap;
	}
	x->pending[x->nr_pending].tag = tag;
	x->pending[x->nr_pending].gfn = gpa >> PAGE_SHIFT;
	x->nr_pending++;
}

/* Re-arms the frames drained since the last call (or all of RAM). */
static int ooh_xen_rearm(struct ooh_xen *x)
{
	struct ooh_spml_op op = {};
	int ret;

	if (x->rearm_all) {
		op.u.rearm.flags = OOH_SPML_REARM_ALL;
	} else {
		if (!x->nr_rearm)
			return 0;
		op.u.rearm.gfns = (u64)(unsigned long)x->rearm;
		op.u.rearm.nr = x->nr_rearm;
	}
	/* Xen continues a preempted REARM itself, from `done`. */
	ret = ooh_spml(OOH_SPML_CMD_REARM, 0, &op);
	if (!ret) {
		x->nr_rearm = 0;
		x->rearm_all = false;
	}
	return ret;
}

static int ooh_xen_flush_rearm(struct ooh_transport *t)
{
	struct ooh_xen *x = t->priv;
	struct ooh_spml_op op = {};
	int ret;

	ret = ooh_spml(OOH_SPML_CMD_FLUSH, OOH_SPML_VCPU_ALL, &op);
	if (ret)
		return ret;
	if (ooh_xen_drain_rings(x, ooh_xen_keep, x))
		x->pending_lost = true;
	/* Re-arm after the drain: every page drained is logged again. */
	ret = ooh_xen_rearm(x);
	if (ret)
		x->pending_lost = true;
	return ret;
}

static bool ooh_xen_drain(struct ooh_transport *t, bool to_rearm, ooh_sink_fn sink, void *ctx)
{
	struct ooh_xen *x = t->priv;
	bool lost;
	size_t i;

	if (!to_rearm)
		return ooh_xen_drain_rings(x, sink, ctx);
	for (i = 0; i < x->nr_pending; i++) {
		u32 tag = x->pending[i].tag;

		/*
		 * Writes made while no tracker ran (another process through
		 * shared memory, a kernel thread) or by Xen itself may be any
		 * tracker's: SPML trackers map frames back, so give them to all.
		 */
		if (tag == OOH_SPML_TAG_NONE || tag == OOH_SPML_TAG_EXTERNAL)
			tag = OOH_TAG_ALL;
		sink(ctx, tag, x->pending[i].gfn << PAGE_SHIFT, 0);
	}
	x->nr_pending = 0;
	lost = x->pending_lost;
	x->pending_lost = false;
	return lost;
}

static const struct ooh_transport_ops ooh_xen_ops = {
	.vcpu_enable = ooh_xen_enable,
	.vcpu_disable = ooh_xen_disable,
	.flush_rearm = ooh_xen_flush_rearm,
	.drain = ooh_xen_drain,
};

static void ooh_xen_free_ring(struct ooh_xen_ring *r, int cpu)
{
	struct ooh_spml_op op = {};
	unsigned int i;

	if (r->irq > 0)
		unbind_from_irqhandler(r->irq, r);
	if (r->registered)
		ooh_spml(OOH_SPML_CMD_UNREGISTER, xen_vcpu_nr(cpu), &op);
	r->registered = false;
	for (i = 0; i < ARRAY_SIZE(r->pages); i++)
		if (r->pages[i])
			__free_page(r->pages[i]);
	memset(r, 0, sizeof(*r));
}

static int ooh_xen_register_ring(struct ooh_xen_ring *r, int cpu)
{
	u64 *gfns;
	struct ooh_spml_op op = {};
	unsigned int i;
	int ret;

	gfns = kcalloc(ARRAY_SIZE(r->pages), sizeof(*gfns), GFP_KERNEL);
	if (!gfns)
		return -ENOMEM;
	for (i = 0; i < ARRAY_SIZE(r->pages); i++) {
		r->pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!r->pages[i]) {
			ret = -ENOMEM;
			goto out;
		}
		gfns[i] = xen_page_to_gfn(r->pages[i]);
	}
	r->hdr = page_address(r->pages[0]);
	op.u.ring.frames = (u64)(unsigned long)gfns;
	op.u.ring.nr_frames = ARRAY_SIZE(r->pages);
	op.u.ring.notify_threshold = 0;
	ret = ooh_spml(OOH_SPML_CMD_REGISTER_RING, xen_vcpu_nr(cpu), &op);
	if (!ret && (r->hdr->magic != OOH_SPML_RING_MAGIC ||
		     r->hdr->capacity != OOH_XEN_DATA_FRAMES * OOH_SPML_ENTRIES_PER_FRAME))
		ret = -EPROTO;
	r->registered = !ret || ret == -EPROTO;
out:
	kfree(gfns);
	return ret;
}

int ooh_xen_init(void)
{
	struct ooh_spml_op op = {};
	struct ooh_xen *x;
	int ret, cpu;

	if (!xen_hvm_domain())
		return -ENODEV;
	ret = ooh_spml(OOH_SPML_CMD_QUERY, OOH_SPML_VCPU_SELF, &op);
	if (ret || op.u.query.magic != OOH_SPML_MAGIC || op.u.query.version < OOH_SPML_VERSION) {
		pr_info("Xen without Shadow PML (query: %d)\n", ret);
		return -ENODEV;
	}
	x = kzalloc(sizeof(*x), GFP_KERNEL);
	if (!x)
		return -ENOMEM;
	x->rings = kcalloc(nr_cpu_ids, sizeof(*x->rings), GFP_KERNEL);
	if (!x->rings) {
		kfree(x);
		return -ENOMEM;
	}
	cpus_read_lock();
	for_each_possible_cpu(cpu)
	{
		ret = ooh_xen_register_ring(&x->rings[cpu], cpu);
		if (ret) {
			pr_err("Shadow PML ring of CPU %d: %d\n", cpu, ret);
			break;
		}
		/* Without the VIRQ the periodic drain still runs: not fatal. */
		x->rings[cpu].irq =
			bind_virq_to_irqhandler(op.u.query.virq, cpu, ooh_xen_virq, IRQF_PERCPU,
						"ooh-spml", &x->rings[cpu]);
		if (x->rings[cpu].irq <= 0)
			pr_warn("cannot bind the SPML VIRQ %u on CPU %d: %d\n", op.u.query.virq,
				cpu, x->rings[cpu].irq);
	}
	cpus_read_unlock();
	if (!ret) {
		/* Nothing is armed before the first REARM. */
		x->rearm_all = true;
		ret = ooh_xen_rearm(x);
	}
	if (!ret) {
		x->transport.name = "xen-spml";
		x->transport.transport_bit = OOH_TRANSPORT_XEN_SPML;
		x->transport.modes = 1u << OOH_MODE_SPML;
		x->transport.ops = &ooh_xen_ops;
		x->transport.priv = x;
		ret = ooh_register_transport(&x->transport);
	}
	if (ret) {
		for_each_possible_cpu(cpu) ooh_xen_free_ring(&x->rings[cpu], cpu);
		kfree(x->rings);
		kfree(x);
		return ret;
	}
	ooh_xen_dev = x;
	return 0;
}

void ooh_xen_exit(void)
{
	struct ooh_xen *x = ooh_xen_dev;
	int cpu;

	if (!x)
		return;
	ooh_unregister_transport(&x->transport);
	for_each_possible_cpu(cpu) ooh_xen_free_ring(&x->rings[cpu], cpu);
	kvfree(x->pending);
	kvfree(x->rearm);
	kfree(x->rings);
	kfree(x);
	ooh_xen_dev = NULL;
}
