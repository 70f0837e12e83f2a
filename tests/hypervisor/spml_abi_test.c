// SPDX-License-Identifier: Apache-2.0
/*
 * spml_abi_test.c - pins the layout of the guest<->Xen Shadow-PML ABI.
 *
 * include/uapi/ooh/ooh_spml_abi.h is shared by the Xen series and the guest
 * module; both are built separately, so a field that moves silently breaks
 * the other side. Every offset and size here is part of the ABI (version
 * 1); a change must bump OOH_SPML_VERSION and update this table.
 */
#include <stddef.h>
#include <stdio.h>

#include <ooh/ooh_spml_abi.h>

static int failures;

static void expect(const char *what, size_t got, size_t want)
{
	if (got != want) {
		printf("FAIL %s: %zu, ABI says %zu\n", what, got, want);
		failures++;
	}
}

#define OFF(type, field, want) expect(#type "." #field, offsetof(struct type, field), want)
#define SIZE(type, want)       expect("sizeof " #type, sizeof(struct type), want)

int main(void)
{
	SIZE(ooh_spml_entry, 16);
	OFF(ooh_spml_entry, gfn, 0);
	OFF(ooh_spml_entry, tag, 8);
	OFF(ooh_spml_entry, flags, 12);

	SIZE(ooh_spml_ring_header, 192);
	OFF(ooh_spml_ring_header, magic, 0);
	OFF(ooh_spml_ring_header, version, 4);
	OFF(ooh_spml_ring_header, capacity, 8);
	OFF(ooh_spml_ring_header, notify_threshold, 12);
	OFF(ooh_spml_ring_header, flags, 16);
	OFF(ooh_spml_ring_header, tag, 20);
	OFF(ooh_spml_ring_header, overflow, 24);
	OFF(ooh_spml_ring_header, logged, 32);
	OFF(ooh_spml_ring_header, prod, 64);  /* own cache line */
	OFF(ooh_spml_ring_header, cons, 128); /* own cache line */

	SIZE(ooh_spml_op, 48);
	OFF(ooh_spml_op, magic, 0);
	OFF(ooh_spml_op, version, 4);
	OFF(ooh_spml_op, cmd, 6);
	OFF(ooh_spml_op, vcpu, 8);
	OFF(ooh_spml_op, pad, 12);
	OFF(ooh_spml_op, u, 16);

	SIZE(ooh_spml_query, 24);
	SIZE(ooh_spml_ring, 16);
	OFF(ooh_spml_ring, frames, 0);
	OFF(ooh_spml_ring, nr_frames, 8);
	OFF(ooh_spml_ring, notify_threshold, 12);
	SIZE(ooh_spml_enable, 8);
	SIZE(ooh_spml_rearm, 24);
	OFF(ooh_spml_rearm, gfns, 0);
	OFF(ooh_spml_rearm, nr, 8);
	OFF(ooh_spml_rearm, flags, 12);
	OFF(ooh_spml_rearm, done, 16);
	OFF(ooh_spml_rearm, skipped, 20);

	/* Numbers the other side hard-codes or checks. */
	expect("OOH_HVMOP_spml", OOH_HVMOP_spml, 0xf0);
	expect("OOH_SPML_VIRQ", OOH_SPML_VIRQ, 23);
	expect("entries per frame", OOH_SPML_ENTRIES_PER_FRAME, 256);
	expect("max ring frames", OOH_SPML_MAX_RING_FRAMES, 257);
	expect("version", OOH_SPML_VERSION, 1);

	if (failures)
		return 1;
	printf("Shadow-PML ABI layout as documented\n");
	return 0;
}
