// SPDX-License-Identifier: GPL-2.0
/*
 * Transport for Xen Shadow PML (hypervisor/xen/ooh_spml_abi.h). Placeholder
 * until the ring registration is written: it reports itself absent.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>

#include "ooh.h"

int ooh_xen_init(void)
{
	return -ENODEV;
}

void ooh_xen_exit(void)
{
}
