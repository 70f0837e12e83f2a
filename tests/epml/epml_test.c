// SPDX-License-Identifier: Apache-2.0
/*
 * epml_test.c - bare-metal check of stock PML and Extended PML (EPML).
 *
 * The kernel enters VMX root mode, maps guest memory with EPT (accessed and
 * dirty flags on) and runs a 32-bit paged guest - the same image, in VMX
 * non-root mode - that writes known pages. The host checks what PML
 * logged; the guest checks what EPML logged into its own buffer.
 *
 *  stock PML (any Bochs with PML):
 *    S1  600 pages written once: each GPA logged exactly once, and the
 *        512-entry buffer filling up exits to the host (PML full);
 *    S2  the same pages written again: nothing logged (once per arming);
 *    S3  EPT dirty bits cleared (re-armed), pages read then written: each
 *        logged exactly once again.
 *  EPML (patched Bochs; reported as SKIP when the CPU lacks it):
 *    E1  300 fresh pages: { GVA, GPA } pairs, each page once, GVA and GPA
 *        matching the guest's page tables; the full 256-entry buffer raised
 *        the guest's vector (no VM exit); the guest page-table page, whose
 *        EPT dirty bit the guest's page walks set, is in the stock PML log
 *        but never in the EPML log;
 *    E2  a 4-slot buffer and 10 writes: 4 entries, overflow count 6,
 *        notified;
 *    E3  the guest disarms EPML (address bit 0 clear): 5 fresh pages are
 *        written, stock PML logs them, the EPML buffer stays untouched.
 *
 * Output goes to port 0xE9; the last line is "epml-test: RESULT pass=N
 * fail=N skip=N"; then the kernel asks Bochs to quit through port 0x8900.
 * Every path ends there: unexpected exits, failed VM entries and runaway
 * loops included.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- memory layout (guest-physical = host-physical, identity EPT) ---- */
#define MEM_END	     0x04000000u /* Bochs "megs: 64" */
#define EPT4K_START  0x01000000u /* 4 KiB EPT pages, dirty bits clear */
#define EPT4K_PTS    3		 /* 3 x 2 MiB */
#define REGION_GPA   0x01000000u /* pages the guest writes */
#define REGION_GVA   0x40000000u /* ... and where the guest sees them */
#define REGION_PAGES 1024u
#define GUEST_PT_GPA 0x01400000u /* guest page table of the region */

#define S_PAGES	 600u /* stock PML: more than 512 */
#define E1_FIRST 600u
#define E1_PAGES 300u /* EPML: more than 256 */
#define E2_FIRST 900u
#define E2_PAGES 10u
#define E2_SLOTS 4u
#define E3_FIRST 910u
#define E3_PAGES 5u

/* ---- VMCS encodings (architectural) ---- */
#define VMCS_GUEST_ES_SEL	    0x0800
#define VMCS_GUEST_INTR_STATUS	    0x0810
#define VMCS_GUEST_PML_INDEX	    0x0812
#define VMCS_HOST_ES_SEL	    0x0c00
#define VMCS_MSR_BITMAP		    0x2004
#define VMCS_PML_ADDRESS	    0x200e
#define VMCS_VAPIC_PAGE		    0x2012
#define VMCS_EPTP		    0x201a
#define VMCS_EOI_EXIT0		    0x201c
#define VMCS_VMREAD_BITMAP	    0x2026
#define VMCS_VMWRITE_BITMAP	    0x2028
#define VMCS_GUEST_PHYS_ADDR	    0x2400
#define VMCS_LINK_POINTER	    0x2800
#define VMCS_GUEST_DEBUGCTL	    0x2802
#define VMCS_PIN_CTLS		    0x4000
#define VMCS_PROC_CTLS		    0x4002
#define VMCS_EXCEPTION_BITMAP	    0x4004
#define VMCS_CR3_TARGET_COUNT	    0x400a
#define VMCS_EXIT_CTLS		    0x400c
#define VMCS_EXIT_MSR_STORE_CNT	    0x400e
#define VMCS_EXIT_MSR_LOAD_CNT	    0x4010
#define VMCS_ENTRY_CTLS		    0x4012
#define VMCS_ENTRY_MSR_LOAD_CNT	    0x4014
#define VMCS_ENTRY_INTR_INFO	    0x4016
#define VMCS_TPR_THRESHOLD	    0x401c
#define VMCS_PROC_CTLS2		    0x401e
#define VMCS_INSTR_ERROR	    0x4400
#define VMCS_EXIT_REASON	    0x4402
#define VMCS_EXIT_INSTR_LEN	    0x440c
#define VMCS_GUEST_ES_LIMIT	    0x4800
#define VMCS_GUEST_ES_AR	    0x4814
#define VMCS_GUEST_LDTR_AR	    0x4820
#define VMCS_GUEST_TR_AR	    0x4822
#define VMCS_GUEST_GDTR_LIMIT	    0x4810
#define VMCS_GUEST_IDTR_LIMIT	    0x4812
#define VMCS_GUEST_INTERRUPTIBILITY 0x4824
#define VMCS_GUEST_ACTIVITY	    0x4826
#define VMCS_GUEST_SYSENTER_CS	    0x482a
#define VMCS_HOST_SYSENTER_CS	    0x4c00
#define VMCS_CR0_MASK		    0x6000
#define VMCS_CR4_MASK		    0x6002
#define VMCS_CR0_SHADOW		    0x6004
#define VMCS_CR4_SHADOW		    0x6006
#define VMCS_EXIT_QUALIFICATION	    0x6400
#define VMCS_GUEST_LINEAR_ADDR	    0x640a
#define VMCS_GUEST_CR0		    0x6800
#define VMCS_GUEST_CR3		    0x6802
#define VMCS_GUEST_CR4		    0x6804
#define VMCS_GUEST_ES_BASE	    0x6806
#define VMCS_GUEST_LDTR_BASE	    0x6812
#define VMCS_GUEST_TR_BASE	    0x6814
#define VMCS_GUEST_GDTR_BASE	    0x6816
#define VMCS_GUEST_IDTR_BASE	    0x6818
#define VMCS_GUEST_DR7		    0x681a
#define VMCS_GUEST_RSP		    0x681c
#define VMCS_GUEST_RIP		    0x681e
#define VMCS_GUEST_RFLAGS	    0x6820
#define VMCS_GUEST_PENDING_DBG	    0x6822
#define VMCS_GUEST_SYSENTER_ESP	    0x6824
#define VMCS_GUEST_SYSENTER_EIP	    0x6826
#define VMCS_HOST_CR0		    0x6c00
#define VMCS_HOST_CR3		    0x6c02
#define VMCS_HOST_CR4		    0x6c04
#define VMCS_HOST_FS_BASE	    0x6c06
#define VMCS_HOST_GS_BASE	    0x6c08
#define VMCS_HOST_TR_BASE	    0x6c0a
#define VMCS_HOST_GDTR_BASE	    0x6c0c
#define VMCS_HOST_IDTR_BASE	    0x6c0e
#define VMCS_HOST_SYSENTER_ESP	    0x6c10
#define VMCS_HOST_SYSENTER_EIP	    0x6c12
#define VMCS_HOST_RSP		    0x6c14
#define VMCS_HOST_RIP		    0x6c16

/*
 * EPML (hypervisor/bochs/patches): outside the architectural ranges. The
 * control is the hypervisor's; the rest is the guest's, in its shadow VMCS.
 */
#define VMCS_EPML_CONTROLS 0x402e
#define VMCS_EPML_INDEX	   0x081c
#define VMCS_EPML_VECTOR   0x081e
#define VMCS_EPML_ADDRESS  0x284a
#define VMCS_EPML_OVERFLOW 0x284c
#define EPML_ENTRIES	   256u
#define EPML_VEC_FULL	   0x40
#define EPML_VEC_OVERFLOW  0x41

#define EXIT_EXTERNAL_INTR 1
#define EXIT_TRIPLE_FAULT  2
#define EXIT_VMCALL	   18
#define EXIT_EPT_VIOLATION 48
#define EXIT_PML_FULL	   62

#define PIN_EXT_INTR_EXIT    (1u << 0)
#define PROC_TPR_SHADOW	     (1u << 21)
#define PROC_MSR_BITMAPS     (1u << 28)
#define PROC_SECONDARY	     (1u << 31)
#define PROC_CR3_LOAD_EXIT   (1u << 15)
#define PROC_CR3_STORE_EXIT  (1u << 16)
#define PROC2_EPT	     (1u << 1)
#define PROC2_X2APIC_MODE    (1u << 4)
#define PROC2_VINTR_DELIVERY (1u << 9)
#define PROC2_VMCS_SHADOWING (1u << 14)
#define PROC2_PML	     (1u << 17)
#define EXIT_HOST_64	     (1u << 9)
#define ENTRY_IA32E	     (1u << 9)

#define MSR_FEATURE_CONTROL    0x03a
#define MSR_VMX_BASIC	       0x480
#define MSR_VMX_PINBASED       0x481
#define MSR_VMX_PROCBASED      0x482
#define MSR_VMX_EXIT	       0x483
#define MSR_VMX_ENTRY	       0x484
#define MSR_VMX_CR0_FIXED0     0x486
#define MSR_VMX_CR0_FIXED1     0x487
#define MSR_VMX_CR4_FIXED0     0x488
#define MSR_VMX_CR4_FIXED1     0x489
#define MSR_VMX_PROCBASED2     0x48b
#define MSR_VMX_EPT_VPID_CAP   0x48c
#define MSR_VMX_TRUE_PINBASED  0x48d
#define MSR_VMX_TRUE_PROCBASED 0x48e
#define MSR_VMX_TRUE_EXIT      0x48f
#define MSR_VMX_TRUE_ENTRY     0x490
#define MSR_X2APIC_EOI	       0x80b

#define EPT_RWX	     7ull
#define EPT_WB	     (6ull << 3)
#define EPT_LARGE    (1ull << 7)
#define EPT_ACCESSED (1ull << 8)
#define EPT_DIRTY    (1ull << 9)

enum vmcall_nr {
	VMCALL_S1 = 1,
	VMCALL_S2,
	VMCALL_S3,
	VMCALL_E1,
	VMCALL_E2,
	VMCALL_E3,
	VMCALL_DONE,
};

struct guest_regs { /* pushal layout */
	uint32_t edi, esi, ebp, esp, ebx, edx, ecx, eax;
};

struct epml_entry {
	uint64_t gpa; /* page | 1 (valid) */
	uint64_t gva; /* page */
};

#define PAGE_ALIGNED __attribute__((aligned(4096)))

static uint8_t vmxon_region[4096] PAGE_ALIGNED;
static uint8_t vmcs[4096] PAGE_ALIGNED;
static uint8_t shadow_vmcs[4096] PAGE_ALIGNED;
static uint8_t msr_bitmap[4096] PAGE_ALIGNED;
static uint8_t vmread_bitmap[4096] PAGE_ALIGNED;
static uint8_t vmwrite_bitmap[4096] PAGE_ALIGNED;
static uint8_t vapic_page[4096] PAGE_ALIGNED;
static uint64_t pml_buf[512] PAGE_ALIGNED;
static uint64_t ept_pml4[512] PAGE_ALIGNED;
static uint64_t ept_pdpt[512] PAGE_ALIGNED;
static uint64_t ept_pd[512] PAGE_ALIGNED;
static uint64_t ept_pt[EPT4K_PTS][512] PAGE_ALIGNED;
static uint32_t host_pd[1024] PAGE_ALIGNED;
static uint32_t guest_pd[1024] PAGE_ALIGNED;
static uint64_t guest_idt[256] PAGE_ALIGNED;
static struct epml_entry epml_buf[EPML_ENTRIES] PAGE_ALIGNED;
static uint8_t guest_stack[16384] PAGE_ALIGNED;
static uint32_t tss[26] __attribute__((aligned(64)));

extern uint64_t gdt[4];
extern struct {
	uint16_t limit;
	uint32_t base;
} __attribute__((packed)) gdt_desc;
extern char host_stack_top[];
extern void vmexit_entry(void);
extern void guest_isr_full(void);
extern void guest_isr_overflow(void);

/* ---- host bookkeeping ---- */
static uint32_t pml_log[2048];
static uint32_t pml_count;
static uint32_t pml_full_exits;
static uint32_t exits_total;
static uint32_t n_pass, n_fail, n_skip;
static bool epml_supported;
static uint64_t eptp;
static uint32_t invept_type;

/* ---- guest-side results (shared memory, read by the host) ---- */
static struct epml_entry g_log[1024];
static volatile uint32_t g_log_count;
static volatile uint32_t g_full_irqs, g_ovf_irqs, g_vmx_errors;
static volatile uint32_t g_e2_index, g_e2_overflow;
static volatile uint32_t g_e3_index, g_e3_overflow;
static volatile uint32_t g_sink;

/* ---------------------------------------------------------------- I/O */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void putc_e9(char c)
{
	outb(0xe9, (uint8_t)c);
}

static void puts_e9(const char *s)
{
	while (*s)
		putc_e9(*s++);
}

static void put_uint(uint32_t v, unsigned base)
{
	char buf[12];
	int i = 0;

	do {
		unsigned d = v % base;
		buf[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	while (i)
		putc_e9(buf[--i]);
}

/* printf subset: %s %u %x %c. */
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	puts_e9("epml-test: ");
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc_e9(*fmt);
			continue;
		}
		switch (*++fmt) {
		case 's':
			puts_e9(va_arg(ap, const char *));
			break;
		case 'u':
			put_uint(va_arg(ap, uint32_t), 10);
			break;
		case 'x':
			puts_e9("0x");
			put_uint(va_arg(ap, uint32_t), 16);
			break;
		case 'c':
			putc_e9((char)va_arg(ap, int));
			break;
		default:
			putc_e9('%');
			putc_e9(*fmt);
			break;
		}
	}
	putc_e9('\n');
	va_end(ap);
}

static __attribute__((noreturn)) void finish(void)
{
	say("RESULT pass=%u fail=%u skip=%u", n_pass, n_fail, n_skip);
	for (const char *s = "Shutdown"; *s; s++)
		outb(0x8900, (uint8_t)*s);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void check(bool ok, const char *what)
{
	say("[%s] %s", ok ? "PASS" : "FAIL", what);
	if (ok)
		n_pass++;
	else
		n_fail++;
}

static __attribute__((noreturn)) void fatal(const char *what, uint32_t v)
{
	say("[FAIL] %s (%x)", what, v);
	n_fail++;
	finish();
}

/* ---------------------------------------------------------------- CPU */
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

#define READ_CR(n)                                                                                 \
	({                                                                                         \
		uint32_t _v;                                                                       \
		__asm__ volatile("mov %%cr" #n ", %0" : "=r"(_v));                                 \
		_v;                                                                                \
	})
#define WRITE_CR(n, v) __asm__ volatile("mov %0, %%cr" #n : : "r"((uint32_t)(v)) : "memory")

/* VMX instructions; return true on VMfail. */
static inline bool vmxon(uint64_t *pa)
{
	uint8_t err;

	__asm__ volatile("vmxon %1; setna %0" : "=qm"(err) : "m"(*pa) : "cc", "memory");
	return err;
}

static inline bool vmclear(uint64_t *pa)
{
	uint8_t err;

	__asm__ volatile("vmclear %1; setna %0" : "=qm"(err) : "m"(*pa) : "cc", "memory");
	return err;
}

static inline bool vmptrld(uint64_t *pa)
{
	uint8_t err;

	__asm__ volatile("vmptrld %1; setna %0" : "=qm"(err) : "m"(*pa) : "cc", "memory");
	return err;
}

static inline bool vmwrite(uint32_t enc, uint32_t val)
{
	uint8_t err;

	__asm__ volatile("vmwrite %2, %1; setna %0"
			 : "=qm"(err)
			 : "r"(enc), "rm"(val)
			 : "cc", "memory");
	return err;
}

static inline bool vmread(uint32_t enc, uint32_t *val)
{
	uint8_t err;
	uint32_t v = 0;

	__asm__ volatile("vmread %2, %1; setna %0"
			 : "=qm"(err), "=r"(v)
			 : "r"(enc)
			 : "cc", "memory");
	*val = v;
	return err;
}

static uint32_t vmr(uint32_t enc)
{
	uint32_t v;

	if (vmread(enc, &v))
		fatal("VMREAD failed", enc);
	return v;
}

static uint32_t vmwrite_errors;

static void vmw(uint32_t enc, uint32_t val)
{
	if (vmwrite(enc, val)) {
		say("VMWRITE %x failed", enc);
		vmwrite_errors++;
	}
}

/* 64-bit field from 32-bit mode: full and high halves. */
static void vmw64(uint32_t enc, uint64_t val)
{
	vmw(enc, (uint32_t)val);
	vmw(enc + 1, (uint32_t)(val >> 32));
}

static void invept_all(void)
{
	struct {
		uint64_t eptp, zero;
	} desc = {eptp, 0};
	uint8_t err;

	__asm__ volatile("invept %1, %2; setna %0"
			 : "=qm"(err)
			 : "m"(desc), "r"(invept_type)
			 : "cc", "memory");
	if (err)
		fatal("INVEPT failed", invept_type);
}

/* ------------------------------------------------------------- guest */
static inline uint32_t vmcall(uint32_t nr)
{
	uint32_t ret;

	__asm__ volatile("vmcall" : "=a"(ret) : "a"(nr) : "memory");
	return ret;
}

static inline volatile uint32_t *region_page(uint32_t i)
{
	return (volatile uint32_t *)(REGION_GVA + i * 4096u);
}

/* Copy the logged EPML slots (from 255 down to index + 1) to g_log. */
static void guest_drain_epml(uint32_t index)
{
	uint32_t low = index >= EPML_ENTRIES ? 0 : index + 1;

	for (uint32_t s = EPML_ENTRIES; s-- > low;)
		if (g_log_count < sizeof(g_log) / sizeof(g_log[0]))
			g_log[g_log_count++] = epml_buf[s];
}

static inline void guest_eoi(void)
{
	wrmsr(MSR_X2APIC_EOI, 0);
}

/* Vector EPML_VEC_FULL: drain, re-arm the index, EOI. No VM exit. */
void guest_epml_full(void)
{
	uint32_t index;

	if (vmread(VMCS_EPML_INDEX, &index))
		g_vmx_errors++;
	guest_drain_epml(index & 0xffff);
	if (vmwrite(VMCS_EPML_INDEX, EPML_ENTRIES - 1))
		g_vmx_errors++;
	g_full_irqs++;
	guest_eoi();
}

/* Vector EPML_VEC_OVERFLOW: count only, so the buffer stays full. */
void guest_epml_overflow(void)
{
	g_ovf_irqs++;
	guest_eoi();
}

static void guest_epml_arm(uint32_t vector, uint32_t index)
{
	g_vmx_errors += vmwrite(VMCS_EPML_VECTOR, vector);
	g_vmx_errors += vmwrite(VMCS_EPML_INDEX, index);
	g_vmx_errors += vmwrite(VMCS_EPML_OVERFLOW, 0);
	g_vmx_errors += vmwrite(VMCS_EPML_OVERFLOW + 1, 0);
	g_vmx_errors += vmwrite(VMCS_EPML_ADDRESS + 1, 0);
	g_vmx_errors += vmwrite(VMCS_EPML_ADDRESS, (uint32_t)(uintptr_t)epml_buf | 1);
}

void guest_main(void)
{
	uint32_t i;

	/* S1: first writes after arming. */
	for (i = 0; i < S_PAGES; i++)
		region_page(i)[0] = 0x51000000u | i;
	vmcall(VMCALL_S1);

	/* S2: the same pages again - already dirty, nothing to log. */
	for (i = 0; i < S_PAGES; i++)
		region_page(i)[1] = 0x52000000u | i;
	vmcall(VMCALL_S2);

	/* S3: re-armed by the host; a read first must not hide the write. */
	for (i = 0; i < S_PAGES; i++) {
		g_sink += region_page(i)[2];
		region_page(i)[3] = 0x53000000u | i;
	}

	if (vmcall(VMCALL_S3)) {
		uint32_t index;

		/* E1: the host re-armed our page-table page: walk it again. */
		WRITE_CR(3, READ_CR(3));
		guest_epml_arm(EPML_VEC_FULL, EPML_ENTRIES - 1);
		__asm__ volatile("sti");
		for (i = E1_FIRST; i < E1_FIRST + E1_PAGES; i++)
			region_page(i)[0] = 0xe1000000u | i;
		__asm__ volatile("cli");
		g_vmx_errors += vmread(VMCS_EPML_INDEX, &index);
		guest_drain_epml(index & 0xffff);
		vmcall(VMCALL_E1);

		/* E2: 4 free slots, 10 writes, a handler that does not drain. */
		g_log_count = 0;
		guest_epml_arm(EPML_VEC_OVERFLOW, E2_SLOTS - 1);
		__asm__ volatile("sti");
		for (i = E2_FIRST; i < E2_FIRST + E2_PAGES; i++)
			region_page(i)[0] = 0xe2000000u | i;
		__asm__ volatile("cli");
		g_vmx_errors += vmread(VMCS_EPML_INDEX, &index);
		g_e2_index = index & 0xffff;
		g_vmx_errors += vmread(VMCS_EPML_OVERFLOW, &index);
		g_e2_overflow = index;
		for (uint32_t s = E2_SLOTS; s-- > 0;)
			g_log[g_log_count++] = epml_buf[s];
		vmcall(VMCALL_E2);

		/* E3: disarmed (bit 0 clear), with room in the buffer. */
		guest_epml_arm(EPML_VEC_FULL, EPML_ENTRIES - 1);
		g_vmx_errors += vmwrite(VMCS_EPML_ADDRESS, (uint32_t)(uintptr_t)epml_buf);
		for (i = E3_FIRST; i < E3_FIRST + E3_PAGES; i++)
			region_page(i)[0] = 0xe3000000u | i;
		g_vmx_errors += vmread(VMCS_EPML_INDEX, &index);
		g_e3_index = index & 0xffff;
		g_vmx_errors += vmread(VMCS_EPML_OVERFLOW, &index);
		g_e3_overflow = index;
		vmcall(VMCALL_E3);
	}
	vmcall(VMCALL_DONE);
	for (;;)
		;
}

/* -------------------------------------------------------------- host */
static void drain_pml(void)
{
	uint32_t index = vmr(VMCS_GUEST_PML_INDEX) & 0xffff;
	uint32_t low = index >= 512 ? 0 : index + 1;

	for (uint32_t s = 512; s-- > low;)
		if (pml_count < sizeof(pml_log) / sizeof(pml_log[0]))
			pml_log[pml_count++] = (uint32_t)pml_buf[s] & ~0xfffu;
	vmw(VMCS_GUEST_PML_INDEX, 511);
}

/* Clear the EPT dirty bit of one 4 KiB-mapped GPA (INVEPT afterwards). */
static void ept_rearm(uint32_t gpa)
{
	uint32_t idx = (gpa - EPT4K_START) >> 12;

	ept_pt[idx / 512][idx % 512] &= ~EPT_DIRTY;
}

/*
 * The PML log of one phase: pages [first, first + n) of the region must
 * appear exactly `expect` times each, other region pages never; the only
 * other GPA allowed is the guest page-table page (its walk writes).
 */
static bool pml_log_matches(uint32_t first, uint32_t n, uint32_t expect, uint32_t *pt_seen)
{
	static uint16_t seen[REGION_PAGES];
	bool ok = true;
	uint32_t other = 0;

	for (uint32_t i = 0; i < REGION_PAGES; i++)
		seen[i] = 0;
	*pt_seen = 0;
	for (uint32_t i = 0; i < pml_count; i++) {
		uint32_t gpa = pml_log[i];

		if (gpa >= REGION_GPA && gpa < REGION_GPA + REGION_PAGES * 4096u)
			seen[(gpa - REGION_GPA) >> 12]++;
		else if (gpa == GUEST_PT_GPA)
			(*pt_seen)++;
		else
			other++;
	}
	for (uint32_t i = 0; i < REGION_PAGES; i++) {
		uint32_t want = (i >= first && i < first + n) ? expect : 0;

		if (seen[i] != want) {
			if (ok)
				say("page %u logged %u times, expected %u", i, seen[i], want);
			ok = false;
		}
	}
	if (other) {
		say("%u unexpected GPAs logged (first %x)", other, pml_log[0]);
		ok = false;
	}
	say("PML log: %u entries, page-table page %u times", pml_count, *pt_seen);
	return ok;
}

/* The guest's EPML log: every entry valid and consistent, pages each once. */
static bool epml_log_matches(uint32_t first, uint32_t n)
{
	static uint16_t seen[REGION_PAGES];
	bool ok = true;

	for (uint32_t i = 0; i < REGION_PAGES; i++)
		seen[i] = 0;
	for (uint32_t i = 0; i < g_log_count; i++) {
		uint32_t gpa = (uint32_t)g_log[i].gpa, gva = (uint32_t)g_log[i].gva;
		uint32_t page;

		if (!(gpa & 1) || (g_log[i].gpa >> 32) || (g_log[i].gva >> 32)) {
			say("entry %u malformed: gpa %x gva %x", i, gpa, gva);
			ok = false;
			continue;
		}
		gpa &= ~0xfffu;
		if (gpa == GUEST_PT_GPA) {
			say("entry %u logs the page-table page %x (a page-walk write)", i, gpa);
			ok = false;
			continue;
		}
		if (gpa < REGION_GPA || gpa >= REGION_GPA + REGION_PAGES * 4096u) {
			say("entry %u: unexpected gpa %x gva %x", i, gpa, gva);
			ok = false;
			continue;
		}
		page = (gpa - REGION_GPA) >> 12;
		if (gva != REGION_GVA + page * 4096u) {
			say("entry %u: gva %x does not map gpa %x", i, gva, gpa);
			ok = false;
		}
		seen[page]++;
	}
	for (uint32_t i = 0; i < REGION_PAGES; i++) {
		uint32_t want = (i >= first && i < first + n) ? 1 : 0;

		if (seen[i] != want) {
			if (ok)
				say("page %u in EPML log %u times, expected %u", i, seen[i], want);
			ok = false;
		}
	}
	say("EPML log: %u entries", g_log_count);
	return ok;
}

static uint32_t handle_vmcall(uint32_t nr)
{
	uint32_t pt_seen;

	drain_pml();
	switch (nr) {
	case VMCALL_S1:
		check(pml_log_matches(0, S_PAGES, 1, &pt_seen) && pt_seen <= 1,
		      "pml: 600 first writes, each GPA logged exactly once");
		check(pml_full_exits >= 1, "pml: a full 512-entry buffer exits to the host");
		break;
	case VMCALL_S2:
		check(pml_log_matches(0, 0, 0, &pt_seen),
		      "pml: rewriting dirty pages logs nothing (once per arming)");
		for (uint32_t i = 0; i < S_PAGES; i++)
			ept_rearm(REGION_GPA + i * 4096u);
		invept_all();
		break;
	case VMCALL_S3:
		check(pml_log_matches(0, S_PAGES, 1, &pt_seen),
		      "pml: after re-arming, read-then-write pages are logged once again");
		pml_count = 0;
		if (!epml_supported) {
			say("[SKIP] epml: this CPU has no Extended PML (VMWRITE of its control "
			    "fails)");
			n_skip++;
			return 0;
		}
		ept_rearm(GUEST_PT_GPA);
		invept_all();
		vmw(VMCS_EPML_CONTROLS, 1);
		return 1;
	case VMCALL_E1:
		check(g_vmx_errors == 0,
		      "epml: guest VMREAD/VMWRITE of its shadow-VMCS EPML fields succeed");
		check(epml_log_matches(E1_FIRST, E1_PAGES),
		      "epml: 300 writes logged as matching GVA/GPA pairs, each page once");
		check(g_full_irqs == 1,
		      "epml: the full buffer raised the guest's vector once, no VM exit");
		check(pml_log_matches(E1_FIRST, E1_PAGES, 1, &pt_seen),
		      "epml: stock PML keeps logging each GPA once alongside EPML");
		check(pt_seen == 1, "epml: page-walk writes reach stock PML but not the EPML log");
		say("E1: %u full interrupts, %u log entries", g_full_irqs, g_log_count);
		break;
	case VMCALL_E2:
		say("E2: index %x overflow %u interrupts %u", g_e2_index, g_e2_overflow,
		    g_ovf_irqs);
		check(epml_log_matches(E2_FIRST, E2_SLOTS) && g_e2_index == 0xffff,
		      "epml: a 4-slot buffer holds the first 4 writes");
		check(g_e2_overflow == E2_PAGES - E2_SLOTS && g_ovf_irqs >= 1,
		      "epml: the 6 writes that did not fit are counted and notified");
		break;
	case VMCALL_E3:
		check(pml_log_matches(E3_FIRST, E3_PAGES, 1, &pt_seen) &&
			      g_e3_index == EPML_ENTRIES - 1 && g_e3_overflow == 0 &&
			      g_vmx_errors == 0,
		      "epml: disarmed by the guest, nothing is logged; stock PML still is");
		break;
	case VMCALL_DONE:
		check(vmwrite_errors == 0, "host: every VMWRITE succeeded");
		finish();
	default:
		fatal("unknown VMCALL", nr);
	}
	pml_count = 0;
	return 0;
}

void vmexit_handler(struct guest_regs *regs)
{
	uint32_t reason = vmr(VMCS_EXIT_REASON);

	if (++exits_total > 100000)
		fatal("too many VM exits", exits_total);
	if (reason & 0x80000000u)
		fatal("VM entry failed, exit reason", reason);

	switch (reason & 0xffff) {
	case EXIT_VMCALL:
		regs->eax = handle_vmcall(regs->eax);
		vmw(VMCS_GUEST_RIP, vmr(VMCS_GUEST_RIP) + vmr(VMCS_EXIT_INSTR_LEN));
		break;
	case EXIT_PML_FULL:
		pml_full_exits++;
		drain_pml();
		break;
	case EXIT_EXTERNAL_INTR:
		/* The PIC is masked; tolerate a stray one, not a storm. */
		if (exits_total > 1000)
			fatal("external interrupt storm", reason);
		break;
	default:
		say("exit reason %u qualification %x rip %x gpa %x gla %x", reason & 0xffff,
		    vmr(VMCS_EXIT_QUALIFICATION), vmr(VMCS_GUEST_RIP), vmr(VMCS_GUEST_PHYS_ADDR),
		    vmr(VMCS_GUEST_LINEAR_ADDR));
		fatal("unexpected VM exit", reason);
	}
}

void vmresume_failed(void)
{
	fatal("VMRESUME failed, instruction error", vmr(VMCS_INSTR_ERROR));
}

/* Allowed-0/allowed-1 settings of a control field from its capability MSR. */
static uint32_t vmx_ctl(uint32_t msr, uint32_t want, const char *name)
{
	uint64_t cap = rdmsr(msr);
	uint32_t ctl = (want | (uint32_t)cap) & (uint32_t)(cap >> 32);

	if ((ctl & want) != want) {
		say("control %s: %x wanted, %x allowed", name, want, (uint32_t)(cap >> 32));
		fatal("VMX control not supported", want & ~ctl);
	}
	return ctl;
}

static void setup_tables(void)
{
	uint32_t i, tss_base = (uint32_t)(uintptr_t)tss;

	/* TSS descriptor 0x18 (VM entry and exit need a usable TR). */
	gdt[3] = (uint64_t)(sizeof(tss) - 1) | ((uint64_t)(tss_base & 0xffffff) << 16) |
		 (0x89ull << 40) | ((uint64_t)(tss_base >> 24) << 56);
	__asm__ volatile("ltr %w0" : : "r"(0x18));

	/* Host and guest: identity 4 MiB pages over RAM. */
	for (i = 0; i < MEM_END >> 22; i++)
		host_pd[i] = guest_pd[i] = (i << 22) | 0x83;
	/* Guest: the region through 4 KiB pages, GVA != GPA. */
	guest_pd[REGION_GVA >> 22] = GUEST_PT_GPA | 0x3;
	for (i = 0; i < REGION_PAGES; i++)
		((volatile uint32_t *)GUEST_PT_GPA)[i] = (REGION_GPA + i * 4096u) | 0x3;

	/* EPT: identity; 2 MiB pages pre-dirtied, except the 4 KiB window. */
	ept_pml4[0] = (uint32_t)(uintptr_t)ept_pdpt | EPT_RWX;
	ept_pdpt[0] = (uint32_t)(uintptr_t)ept_pd | EPT_RWX;
	for (i = 0; i < MEM_END >> 21; i++) {
		uint32_t base = i << 21;

		if (base >= EPT4K_START && base < EPT4K_START + EPT4K_PTS * 0x200000u)
			ept_pd[i] =
				(uint32_t)(uintptr_t)ept_pt[(base - EPT4K_START) >> 21] | EPT_RWX;
		else
			ept_pd[i] = base | EPT_RWX | EPT_WB | EPT_LARGE | EPT_ACCESSED | EPT_DIRTY;
	}
	for (i = 0; i < EPT4K_PTS * 512; i++)
		ept_pt[i / 512][i % 512] =
			(EPT4K_START + i * 4096u) | EPT_RWX | EPT_WB | EPT_ACCESSED;
	eptp = (uint32_t)(uintptr_t)ept_pml4 | 6 | (3 << 3) | (1 << 6);

	/* Guest IDT: the two EPML vectors. */
	guest_idt[EPML_VEC_FULL] =
		((uint64_t)((uint32_t)(uintptr_t)guest_isr_full & 0xffff0000u) << 32) |
		(0x8e00ull << 32) | (0x08u << 16) | ((uint32_t)(uintptr_t)guest_isr_full & 0xffff);
	guest_idt[EPML_VEC_OVERFLOW] =
		((uint64_t)((uint32_t)(uintptr_t)guest_isr_overflow & 0xffff0000u) << 32) |
		(0x8e00ull << 32) | (0x08u << 16) |
		((uint32_t)(uintptr_t)guest_isr_overflow & 0xffff);

	/* Guest VMREAD/VMWRITE reach the shadow VMCS only for EPML fields. */
	for (i = 0; i < 4096; i++)
		vmread_bitmap[i] = vmwrite_bitmap[i] = 0xff;
	static const uint16_t epml_fields[] = {
		VMCS_EPML_INDEX,       VMCS_EPML_VECTOR,   VMCS_EPML_ADDRESS,
		VMCS_EPML_ADDRESS + 1, VMCS_EPML_OVERFLOW, VMCS_EPML_OVERFLOW + 1,
	};
	for (i = 0; i < sizeof(epml_fields) / sizeof(epml_fields[0]); i++) {
		vmread_bitmap[epml_fields[i] >> 3] &= (uint8_t) ~(1u << (epml_fields[i] & 7));
		vmwrite_bitmap[epml_fields[i] >> 3] &= (uint8_t) ~(1u << (epml_fields[i] & 7));
	}
}

static void setup_vmcs(uint32_t revision, bool true_ctls)
{
	uint32_t cr0 = READ_CR(0), cr3 = READ_CR(3), cr4 = READ_CR(4);
	uint32_t pin, proc, proc2, exit_ctls, entry_ctls, i;

	pin = vmx_ctl(true_ctls ? MSR_VMX_TRUE_PINBASED : MSR_VMX_PINBASED, PIN_EXT_INTR_EXIT,
		      "pin");
	proc = vmx_ctl(true_ctls ? MSR_VMX_TRUE_PROCBASED : MSR_VMX_PROCBASED,
		       PROC_TPR_SHADOW | PROC_MSR_BITMAPS | PROC_SECONDARY, "proc");
	proc &= ~(PROC_CR3_LOAD_EXIT | PROC_CR3_STORE_EXIT) |
		(uint32_t)rdmsr(true_ctls ? MSR_VMX_TRUE_PROCBASED : MSR_VMX_PROCBASED);
	proc2 = vmx_ctl(MSR_VMX_PROCBASED2,
			PROC2_EPT | PROC2_X2APIC_MODE | PROC2_VINTR_DELIVERY |
				PROC2_VMCS_SHADOWING | PROC2_PML,
			"proc2");
	exit_ctls =
		vmx_ctl(true_ctls ? MSR_VMX_TRUE_EXIT : MSR_VMX_EXIT, 0, "exit") & ~EXIT_HOST_64;
	entry_ctls =
		vmx_ctl(true_ctls ? MSR_VMX_TRUE_ENTRY : MSR_VMX_ENTRY, 0, "entry") & ~ENTRY_IA32E;

	*(uint32_t *)shadow_vmcs = revision | 0x80000000u; /* shadow-VMCS indicator */

	vmw(VMCS_PIN_CTLS, pin);
	vmw(VMCS_PROC_CTLS, proc);
	vmw(VMCS_PROC_CTLS2, proc2);
	vmw(VMCS_EXIT_CTLS, exit_ctls);
	vmw(VMCS_ENTRY_CTLS, entry_ctls);
	vmw(VMCS_EXCEPTION_BITMAP, 0);
	vmw(VMCS_CR3_TARGET_COUNT, 0);
	vmw(VMCS_EXIT_MSR_STORE_CNT, 0);
	vmw(VMCS_EXIT_MSR_LOAD_CNT, 0);
	vmw(VMCS_ENTRY_MSR_LOAD_CNT, 0);
	vmw(VMCS_ENTRY_INTR_INFO, 0);
	vmw(VMCS_TPR_THRESHOLD, 0);
	vmw64(VMCS_MSR_BITMAP, (uint32_t)(uintptr_t)msr_bitmap);
	vmw64(VMCS_VAPIC_PAGE, (uint32_t)(uintptr_t)vapic_page);
	for (i = 0; i < 4; i++)
		vmw64(VMCS_EOI_EXIT0 + 2 * i, 0);
	vmw64(VMCS_VMREAD_BITMAP, (uint32_t)(uintptr_t)vmread_bitmap);
	vmw64(VMCS_VMWRITE_BITMAP, (uint32_t)(uintptr_t)vmwrite_bitmap);
	vmw64(VMCS_PML_ADDRESS, (uint32_t)(uintptr_t)pml_buf);
	vmw(VMCS_GUEST_PML_INDEX, 511);
	vmw64(VMCS_EPTP, eptp);
	vmw64(VMCS_LINK_POINTER, (uint32_t)(uintptr_t)shadow_vmcs);
	vmw(VMCS_CR0_MASK, 0);
	vmw(VMCS_CR4_MASK, 0);
	vmw(VMCS_CR0_SHADOW, cr0);
	vmw(VMCS_CR4_SHADOW, cr4);

	/* Host state. */
	vmw(VMCS_HOST_CR0, cr0);
	vmw(VMCS_HOST_CR3, cr3);
	vmw(VMCS_HOST_CR4, cr4);
	for (i = 0; i < 7; i++) /* ES CS SS DS FS GS TR */
		vmw(VMCS_HOST_ES_SEL + 2 * i, i == 1 ? 0x08 : i == 6 ? 0x18 : 0x10);
	vmw(VMCS_HOST_FS_BASE, 0);
	vmw(VMCS_HOST_GS_BASE, 0);
	vmw(VMCS_HOST_TR_BASE, (uint32_t)(uintptr_t)tss);
	vmw(VMCS_HOST_GDTR_BASE, (uint32_t)(uintptr_t)gdt);
	vmw(VMCS_HOST_IDTR_BASE, 0);
	vmw(VMCS_HOST_SYSENTER_CS, 0);
	vmw(VMCS_HOST_SYSENTER_ESP, 0);
	vmw(VMCS_HOST_SYSENTER_EIP, 0);
	vmw(VMCS_HOST_RSP, (uint32_t)(uintptr_t)host_stack_top);
	vmw(VMCS_HOST_RIP, (uint32_t)(uintptr_t)vmexit_entry);

	/* Guest state: flat 32-bit protected mode with paging, CPL 0. */
	vmw(VMCS_GUEST_CR0, cr0);
	vmw(VMCS_GUEST_CR3, (uint32_t)(uintptr_t)guest_pd);
	vmw(VMCS_GUEST_CR4, cr4);
	for (i = 0; i < 6; i++) { /* ES CS SS DS FS GS */
		vmw(VMCS_GUEST_ES_SEL + 2 * i, i == 1 ? 0x08 : 0x10);
		vmw(VMCS_GUEST_ES_BASE + 2 * i, 0);
		vmw(VMCS_GUEST_ES_LIMIT + 2 * i, 0xffffffffu);
		vmw(VMCS_GUEST_ES_AR + 2 * i, i == 1 ? 0xc09b : 0xc093);
	}
	vmw(VMCS_GUEST_ES_SEL + 12, 0); /* LDTR */
	vmw(VMCS_GUEST_LDTR_BASE, 0);
	vmw(VMCS_GUEST_ES_LIMIT + 12, 0);
	vmw(VMCS_GUEST_LDTR_AR, 0x10000);  /* unusable */
	vmw(VMCS_GUEST_ES_SEL + 14, 0x18); /* TR */
	vmw(VMCS_GUEST_TR_BASE, (uint32_t)(uintptr_t)tss);
	vmw(VMCS_GUEST_ES_LIMIT + 14, sizeof(tss) - 1);
	vmw(VMCS_GUEST_TR_AR, 0x8b); /* busy 32-bit TSS */
	vmw(VMCS_GUEST_GDTR_BASE, (uint32_t)(uintptr_t)gdt);
	vmw(VMCS_GUEST_GDTR_LIMIT, gdt_desc.limit);
	vmw(VMCS_GUEST_IDTR_BASE, (uint32_t)(uintptr_t)guest_idt);
	vmw(VMCS_GUEST_IDTR_LIMIT, sizeof(guest_idt) - 1);
	vmw(VMCS_GUEST_DR7, 0x400);
	vmw(VMCS_GUEST_RSP, (uint32_t)(uintptr_t)(guest_stack + sizeof(guest_stack)));
	vmw(VMCS_GUEST_RIP, (uint32_t)(uintptr_t)guest_main);
	vmw(VMCS_GUEST_RFLAGS, 0x2);
	vmw(VMCS_GUEST_PENDING_DBG, 0);
	vmw(VMCS_GUEST_SYSENTER_CS, 0);
	vmw(VMCS_GUEST_SYSENTER_ESP, 0);
	vmw(VMCS_GUEST_SYSENTER_EIP, 0);
	vmw(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmw(VMCS_GUEST_ACTIVITY, 0);
	vmw(VMCS_GUEST_INTR_STATUS, 0);
	vmw64(VMCS_GUEST_DEBUGCTL, 0);
}

void kmain(void)
{
	uint32_t a, b, c, d;
	uint64_t basic, fc, ept_cap;
	uint64_t pa;

	say("start");
	/* Mask the PICs: external-interrupt exiting would exit on every tick. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);

	cpuid(1, &a, &b, &c, &d);
	if (!(c & (1u << 5)))
		fatal("CPUID reports no VMX", c);

	setup_tables();
	WRITE_CR(3, (uint32_t)(uintptr_t)host_pd);
	WRITE_CR(4, READ_CR(4) | (1u << 4));   /* PSE */
	WRITE_CR(0, READ_CR(0) | 0x80000000u); /* PG */

	fc = rdmsr(MSR_FEATURE_CONTROL);
	if (!(fc & 1))
		wrmsr(MSR_FEATURE_CONTROL, fc | 1 | 4);
	else if (!(fc & 4))
		fatal("VMX disabled by IA32_FEATURE_CONTROL", (uint32_t)fc);

	WRITE_CR(0, (READ_CR(0) | (uint32_t)rdmsr(MSR_VMX_CR0_FIXED0)) &
			    (uint32_t)rdmsr(MSR_VMX_CR0_FIXED1));
	WRITE_CR(4, ((READ_CR(4) | (1u << 13)) | (uint32_t)rdmsr(MSR_VMX_CR4_FIXED0)) &
			    (uint32_t)rdmsr(MSR_VMX_CR4_FIXED1));

	basic = rdmsr(MSR_VMX_BASIC);
	ept_cap = rdmsr(MSR_VMX_EPT_VPID_CAP);
	if (!(ept_cap & (1ull << 21)))
		fatal("EPT accessed/dirty flags not supported", (uint32_t)ept_cap);
	invept_type = (ept_cap & (1ull << 26)) ? 2 : 1;

	*(uint32_t *)vmxon_region = (uint32_t)basic & 0x7fffffffu;
	*(uint32_t *)vmcs = (uint32_t)basic & 0x7fffffffu;
	pa = (uint32_t)(uintptr_t)vmxon_region;
	if (vmxon(&pa))
		fatal("VMXON failed", 0);
	pa = (uint32_t)(uintptr_t)vmcs;
	if (vmclear(&pa) || vmptrld(&pa))
		fatal("VMCLEAR/VMPTRLD failed", 0);

	setup_vmcs((uint32_t)basic & 0x7fffffffu, basic & (1ull << 55));

	/* EPML is there if the CPU takes its control field; off until E1. */
	epml_supported = !vmwrite(VMCS_EPML_CONTROLS, 0);
	say("VMX ready: revision %x, EPML %s", (uint32_t)basic & 0x7fffffffu,
	    epml_supported ? "supported" : "not supported");

	__asm__ volatile("vmlaunch");
	fatal("VMLAUNCH failed, instruction error", vmr(VMCS_INSTR_ERROR));
}
