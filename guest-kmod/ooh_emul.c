// SPDX-License-Identifier: GPL-2.0
/*
 * Transport for the emulated PML device: an ivshmem PCI device whose BAR 2 is
 * shared with the qemu-pml TCG plugin on the host (layout in
 * <ooh/ooh_pml_dev.h>). A store to a slot's doorbell is the hypercall.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/io.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/smp.h>

#include <ooh/ooh_pml_dev.h>
#include <ooh/ooh_ring.h>

#include "ooh.h"

#define IVSHMEM_VENDOR 0x1af4
#define IVSHMEM_DEVICE 0x1110
#define OOH_EMUL_BAR   2

struct ooh_emul {
	struct pci_dev *pdev;
	struct ooh_pmldev_header *hdr; /* memremap'd BAR 2 */
	struct ooh_pmldev_entry *rings;
	u64 ring_entries;
	u64 lost_seen[OOH_PMLDEV_MAX_VCPUS];
	int ident_errors;
	struct ooh_transport transport;
};

static struct ooh_emul *ooh_emul_dev;

/* Runs @cmd on the calling CPU's slot; preemption must be off. */
static int ooh_emul_call(struct ooh_emul *e, u32 cmd, u32 arg, u64 arg64)
{
	int cpu = smp_processor_id();
	struct ooh_pmldev_vcpu *v;
	u64 seq;

	if (cpu >= OOH_PMLDEV_MAX_VCPUS)
		return -ERANGE;
	v = &e->hdr->vcpu[cpu];
	WRITE_ONCE(v->cmd, cmd);
	WRITE_ONCE(v->arg, arg);
	WRITE_ONCE(v->arg64, arg64);
	seq = READ_ONCE(v->doorbell) + 1;
	/* The plugin runs the command before our next instruction. */
	WRITE_ONCE(v->doorbell, seq);
	barrier();
	if (READ_ONCE(v->ack) != seq)
		return -EIO; /* ivshmem without the plugin */
	return READ_ONCE(v->status);
}

static void ooh_emul_ident(void *data)
{
	struct ooh_emul *e = data;

	if (ooh_emul_call(e, OOH_PMLDEV_CMD_IDENT, smp_processor_id(), 0))
		e->ident_errors++;
}

/*
 * Teaches the plugin how its view of addresses maps to guest-physical ones:
 * a store to a page we know the address of, then CALIBRATE, with interrupts
 * off so that no other store comes in between.
 */
static int ooh_emul_calibrate(struct ooh_emul *e)
{
	struct page *page = alloc_page(GFP_KERNEL);
	unsigned long flags;
	int ret;

	if (!page)
		return -ENOMEM;
	local_irq_save(flags);
	WRITE_ONCE(*(u64 *)page_address(page), 0x4f6f48);
	ret = ooh_emul_call(e, OOH_PMLDEV_CMD_CALIBRATE, 0, page_to_phys(page));
	local_irq_restore(flags);
	__free_page(page);
	return ret;
}

static void ooh_emul_enable(struct ooh_transport *t, int cpu, u32 tag, u32 mode)
{
	struct ooh_emul *e = t->priv;
	struct ooh_pmldev_vcpu *v;

	if (cpu >= OOH_PMLDEV_MAX_VCPUS)
		return;
	v = &e->hdr->vcpu[cpu];
	WRITE_ONCE(v->tag, tag);
	WRITE_ONCE(v->mode, mode == OOH_MODE_EPML ? OOH_PMLDEV_LOG_GPA | OOH_PMLDEV_LOG_GVA
						  : OOH_PMLDEV_LOG_GPA);
}

static void ooh_emul_disable(struct ooh_transport *t, int cpu)
{
	struct ooh_emul *e = t->priv;

	if (cpu < OOH_PMLDEV_MAX_VCPUS)
		WRITE_ONCE(e->hdr->vcpu[cpu].mode, 0);
}

static int ooh_emul_flush_rearm(struct ooh_transport *t)
{
	int ret;

	preempt_disable();
	ret = ooh_emul_call(t->priv, OOH_PMLDEV_CMD_FLUSH_REARM, 0, 0);
	preempt_enable();
	return ret;
}

static void ooh_emul_flush(struct ooh_transport *t)
{
	preempt_disable();
	ooh_emul_call(t->priv, OOH_PMLDEV_CMD_FLUSH, 0, 0);
	preempt_enable();
}

static bool ooh_emul_drain(struct ooh_transport *t, bool to_rearm, ooh_sink_fn sink, void *ctx)
{
	struct ooh_emul *e = t->priv;
	bool lost = false;
	int s;

	for (s = 0; s < OOH_PMLDEV_MAX_VCPUS; s++) {
		struct ooh_pmldev_vcpu *v = &e->hdr->vcpu[s];
		struct ooh_pmldev_entry *ring = e->rings + s * e->ring_entries;
		u64 head, tail = READ_ONCE(v->tail), dropped;

		head = to_rearm ? smp_load_acquire(&v->rearm_head) : smp_load_acquire(&v->head);
		if (head - tail > e->ring_entries) /* not ours to trust */
			tail = head - e->ring_entries;
		for (; (s64)(head - tail) > 0; tail++) {
			struct ooh_pmldev_entry ent = ring[tail & (e->ring_entries - 1)];

			sink(ctx, ent.tag, ent.gpa, ent.gva);
		}
		smp_store_release(&v->tail, tail);
		dropped = READ_ONCE(v->lost);
		if (dropped != e->lost_seen[s]) {
			e->lost_seen[s] = dropped;
			lost = true;
		}
	}
	return lost;
}

static const struct ooh_transport_ops ooh_emul_ops = {
	.vcpu_enable = ooh_emul_enable,
	.vcpu_disable = ooh_emul_disable,
	.flush_rearm = ooh_emul_flush_rearm,
	.flush = ooh_emul_flush,
	.drain = ooh_emul_drain,
};

static int ooh_emul_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	resource_size_t start, len;
	struct ooh_emul *e;
	int ret, s;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	start = pci_resource_start(pdev, OOH_EMUL_BAR);
	len = pci_resource_len(pdev, OOH_EMUL_BAR);
	if (!start || len < (1u << 20))
		return -ENODEV;
	e = devm_kzalloc(&pdev->dev, sizeof(*e), GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	e->hdr = devm_memremap(&pdev->dev, start, len, MEMREMAP_WB);
	if (IS_ERR(e->hdr))
		return PTR_ERR(e->hdr);
	if (READ_ONCE(e->hdr->magic) != OOH_PMLDEV_MAGIC || e->hdr->version != OOH_PMLDEV_VERSION) {
		dev_info(&pdev->dev, "ivshmem device without the qemu-pml signature, ignored\n");
		return -ENODEV;
	}
	e->ring_entries = e->hdr->ring_entries;
	if (!is_power_of_2(e->ring_entries) ||
	    e->hdr->ring_offset + OOH_PMLDEV_MAX_VCPUS * e->ring_entries *
					  sizeof(struct ooh_pmldev_entry) >
		    len)
		return -EINVAL;
	e->rings = (void *)((char *)e->hdr + e->hdr->ring_offset);
	e->pdev = pdev;
	for (s = 0; s < OOH_PMLDEV_MAX_VCPUS; s++) {
		WRITE_ONCE(e->hdr->vcpu[s].mode, 0);
		e->hdr->vcpu[s].tail = READ_ONCE(e->hdr->vcpu[s].head);
		e->lost_seen[s] = READ_ONCE(e->hdr->vcpu[s].lost);
	}
	/* Tell the plugin where its doorbells are, then bind vCPUs to slots. */
	WRITE_ONCE(e->hdr->bar_gpa, start);
	on_each_cpu(ooh_emul_ident, e, 1);
	if (e->ident_errors) {
		dev_err(&pdev->dev, "the qemu-pml plugin does not answer (%d CPUs)\n",
			e->ident_errors);
		return -ENODEV;
	}
	ret = ooh_emul_calibrate(e);
	if (ret) {
		dev_err(&pdev->dev, "cannot calibrate the plugin's addresses: %d\n", ret);
		return -ENODEV;
	}

	e->transport.name = "emulated-pml (qemu-pml plugin)";
	e->transport.transport_bit = OOH_TRANSPORT_EMULATED;
	e->transport.modes = (1u << OOH_MODE_SPML) | (1u << OOH_MODE_EPML);
	e->transport.ops = &ooh_emul_ops;
	e->transport.priv = e;
	ret = ooh_register_transport(&e->transport);
	if (ret)
		return ret;
	pci_set_drvdata(pdev, e);
	ooh_emul_dev = e;
	dev_info(&pdev->dev, "emulated PML device, %llu entries per vCPU ring\n", e->ring_entries);
	return 0;
}

static void ooh_emul_remove(struct pci_dev *pdev)
{
	struct ooh_emul *e = pci_get_drvdata(pdev);

	if (!e)
		return;
	ooh_unregister_transport(&e->transport);
	WRITE_ONCE(e->hdr->bar_gpa, 0);
	ooh_emul_dev = NULL;
}

static const struct pci_device_id ooh_emul_ids[] = {{PCI_DEVICE(IVSHMEM_VENDOR, IVSHMEM_DEVICE)},
						    {}};
MODULE_DEVICE_TABLE(pci, ooh_emul_ids);

static struct pci_driver ooh_emul_driver = {
	.name = "ooh-emulated-pml",
	.id_table = ooh_emul_ids,
	.probe = ooh_emul_probe,
	.remove = ooh_emul_remove,
};

static bool ooh_emul_registered;

int ooh_emul_init(void)
{
	int ret = pci_register_driver(&ooh_emul_driver);

	ooh_emul_registered = !ret;
	return ret;
}

void ooh_emul_exit(void)
{
	if (ooh_emul_registered)
		pci_unregister_driver(&ooh_emul_driver);
	ooh_emul_registered = false;
}
