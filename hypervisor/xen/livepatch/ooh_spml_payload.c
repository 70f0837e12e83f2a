/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ooh_spml_payload.c - the Shadow-PML HVMOP sub-op, as a Xen livepatch
 * payload for one exact hypervisor build (Debian's xen-hypervisor-4.17).
 *
 * A payload cannot add a hypercall (4.17 generates its dispatch at build
 * time), so it takes over do_hvm_op: sub-op OOH_HVMOP_spml is answered
 * here, every other sub-op goes on into Xen's own do_hvm_op through
 * ooh_spml_orig_do_hvm_op (hook.S). Xen's headers are not used: the
 * payload is built from Debian's binary packages only (no source of the
 * running build is served), so the few Xen interfaces it touches are
 * declared below from their 4.17 signatures, and the facts that depend on
 * the build (where the current vCPU's domain says "HVM") are read out of
 * that very build's xen-syms by build-livepatch and passed in as -D
 * constants.
 *
 * What it answers (include/uapi/ooh/ooh_spml_abi.h): QUERY from any
 * domain, with pml_entries = 0 when Shadow PML cannot log for the caller
 * (not an HVM domain, or no VMX PML with EPT A/D bits on this host); every
 * other command -EOPNOTSUPP. The rings, copy-out and re-arm of the series
 * need the layout of live structures (struct vcpu, the PML buffer) that
 * only the running build's source gives; see LIVEPATCH.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ooh/ooh_spml_abi.h>

#ifndef OOH_CPUINFO_CURRENT_VCPU
#error "build-livepatch passes the offsets read from xen-syms"
#endif

/* Every symbol is resolved inside Xen or the payload: no GOT, no PLT. */
#pragma GCC visibility push(hidden)

/* Xen 4.17 interfaces (xen/include/xen/lib.h, asm/uaccess.h, ...). */
void printk(const char *fmt, ...);
unsigned int copy_from_guest_pv(void *to, const void *from, unsigned int n);
unsigned int copy_to_guest_pv(void *to, const void *from, unsigned int n);
unsigned int copy_from_user_hvm(void *to, const void *from, unsigned int n);
unsigned int copy_to_user_hvm(void *to, const void *from, unsigned int n);
extern uint32_t vmx_secondary_exec_control;
extern uint64_t vmx_ept_vpid_cap;
extern bool hvm_enabled;

/* The original do_hvm_op, entered past the jump the livepatch puts there. */
long ooh_spml_orig_do_hvm_op(unsigned long op, void *arg);

#define XEN_EFAULT     14
#define XEN_EINVAL     22
#define XEN_EOPNOTSUPP 95

/* asm/hvm/vmx/vmcs.h */
#define SECONDARY_EXEC_ENABLE_PML 0x00020000u
#define VMX_EPT_AD_BIT		  0x00200000u
#define NR_PML_ENTRIES		  512u

/*
 * Is the calling vCPU's domain HVM? The same test Xen's own copy_from_guest
 * makes (is_hvm_vcpu(current)): the current vCPU is in struct cpu_info at
 * the top of the stack, its domain in struct vcpu, the type in struct
 * domain; the offsets and mask are this build's.
 */
static bool ooh_spml_caller_is_hvm(void)
{
	unsigned long sp;
	const uint8_t *vcpu, *domain;

	asm("mov %%rsp, %0" : "=r"(sp));
	vcpu = *(const uint8_t *const *)((sp | OOH_STACK_MASK) + OOH_CPUINFO_CURRENT_VCPU);
	domain = *(const uint8_t *const *)(vcpu + OOH_VCPU_DOMAIN);
	return domain[OOH_DOMAIN_HVM_BYTE] & OOH_DOMAIN_HVM_MASK;
}

static unsigned int ooh_spml_copy_in(void *to, const void *from, unsigned int n, bool hvm)
{
	return hvm ? copy_from_user_hvm(to, from, n) : copy_from_guest_pv(to, from, n);
}

static unsigned int ooh_spml_copy_out(void *to, const void *from, unsigned int n, bool hvm)
{
	return hvm ? copy_to_user_hvm(to, from, n) : copy_to_guest_pv(to, from, n);
}

/* Can PML log for this caller here? What the series checks before rings. */
static bool ooh_spml_pml_usable(bool hvm)
{
	return hvm && hvm_enabled && (vmx_secondary_exec_control & SECONDARY_EXEC_ENABLE_PML) &&
	       (vmx_ept_vpid_cap & VMX_EPT_AD_BIT);
}

static long ooh_spml_hvmop(void *arg)
{
	bool hvm = ooh_spml_caller_is_hvm();
	struct ooh_spml_op op;

	if (ooh_spml_copy_in(&op, arg, sizeof(op), hvm))
		return -XEN_EFAULT;
	if (op.magic != OOH_SPML_MAGIC || op.version != OOH_SPML_VERSION || op.pad)
		return -XEN_EINVAL;

	if (op.cmd != OOH_SPML_CMD_QUERY)
		return -XEN_EOPNOTSUPP;

	__builtin_memset(&op.u, 0, sizeof(op.u));
	op.u.query.magic = OOH_SPML_MAGIC;
	op.u.query.version = OOH_SPML_VERSION;
	op.u.query.virq = OOH_SPML_VIRQ;
	op.u.query.max_data_frames = OOH_SPML_MAX_DATA_FRAMES;
	/* 0: no PML for this caller, every other command answers
	 * -EOPNOTSUPP (as they do in this payload anyway). */
	op.u.query.pml_entries = ooh_spml_pml_usable(hvm) ? NR_PML_ENTRIES : 0;
	op.u.query.features = 0;
	return ooh_spml_copy_out(arg, &op, sizeof(op), hvm) ? -XEN_EFAULT : 0;
}

/* Replaces do_hvm_op while the payload is applied. */
long ooh_spml_do_hvm_op(unsigned long op, void *arg)
{
	if (op == OOH_HVMOP_spml)
		return ooh_spml_hvmop(arg);
	return ooh_spml_orig_do_hvm_op(op, arg);
}

/* Xen runs the "load" hooks when it applies the payload, "unload" ones
 * when it reverts it (all CPUs quiesced). */
static void ooh_spml_applied(void)
{
	printk("ooh-spml: Shadow-PML HVMOP 0x%x applied (PML %s on this host)\n", OOH_HVMOP_spml,
	       (vmx_secondary_exec_control & SECONDARY_EXEC_ENABLE_PML) ? "present"
									: "unavailable");
}

static void ooh_spml_reverted(void)
{
	printk("ooh-spml: Shadow-PML HVMOP 0x%x reverted\n", OOH_HVMOP_spml);
}

/*
 * struct livepatch_func, payload version 2 (public/sysctl.h): the function
 * to replace, by name (Xen writes the address it finds into it), with an
 * expectation Xen checks before patching:
 * the first bytes of do_hvm_op must be the instructions hook.S replays.
 */
struct ooh_spml_livepatch_func {
	const char *name;
	void *new_addr;
	void *old_addr;
	uint32_t new_size;
	uint32_t old_size;
	uint8_t version;
	uint8_t pad[39];
	uint8_t expect_flags; /* enabled:1, len:5, rsv:2 */
	uint8_t expect_data[31];
};
_Static_assert(sizeof(struct ooh_spml_livepatch_func) == 104, "struct livepatch_func of Xen 4.17");

__attribute__((section(".livepatch.funcs"),
	       used)) struct ooh_spml_livepatch_func ooh_spml_funcs[] = {
	{
		.name = "do_hvm_op",
		.new_addr = ooh_spml_do_hvm_op,
		.old_addr = NULL, /* looked up by name at upload */
		.new_size = OOH_NEW_SIZE,
		.old_size = OOH_OLD_SIZE,
		.version = 2,
		.expect_flags = 1 | (OOH_PROLOGUE_LEN << 1),
		.expect_data = {OOH_PROLOGUE_BYTES},
	},
};

typedef void ooh_spml_hook_t(void);
__attribute__((section(".livepatch.hooks.load"), used))
ooh_spml_hook_t *const ooh_spml_load_hooks[] = {ooh_spml_applied};
__attribute__((section(".livepatch.hooks.unload"), used))
ooh_spml_hook_t *const ooh_spml_unload_hooks[] = {ooh_spml_reverted};

#pragma GCC visibility pop
