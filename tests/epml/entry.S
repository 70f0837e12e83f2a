/* SPDX-License-Identifier: Apache-2.0 */
/*
 * entry.S - multiboot header, 32-bit entry, GDT, the VM-exit entry point
 * and the guest's interrupt stubs of the EPML test kernel.
 */
#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0x00010000	/* address fields below are valid */

	.section .multiboot, "a"
	.p2align 2
mb_header:
	.long	MB_MAGIC
	.long	MB_FLAGS
	.long	-(MB_MAGIC + MB_FLAGS)
	.long	mb_header		/* header_addr */
	.long	mb_header		/* load_addr */
	.long	_edata			/* load_end_addr */
	.long	_end			/* bss_end_addr */
	.long	_start			/* entry_addr: boot.S jumps here too */

	.text
	.globl	_start
_start:
	cli
	lgdt	gdt_desc
	ljmp	$0x08, $1f
1:	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movl	$host_stack_top, %esp
	/* Zero .bss (the stack is in it, nothing is on it yet). */
	cld
	movl	$__bss_start, %edi
	movl	$_end, %ecx
	subl	%edi, %ecx
	xorl	%eax, %eax
	rep stosb
	call	kmain
2:	cli
	hlt
	jmp	2b

/*
 * VM exits land here with the host stack at host_stack_top and the
 * guest's general registers untouched: save them where vmexit_handler()
 * can read and change them (struct guest_regs), then resume the guest.
 */
	.globl	vmexit_entry
vmexit_entry:
	pushal
	pushl	%esp
	call	vmexit_handler
	addl	$4, %esp
	popal
	vmresume
	/* Only reached when VMRESUME fails. */
	pushl	$0
	call	vmresume_failed
3:	cli
	hlt
	jmp	3b

/* Guest interrupt handlers (run in VMX non-root mode). */
	.globl	guest_isr_full
guest_isr_full:
	pushal
	cld
	call	guest_epml_full
	popal
	iret

	.globl	guest_isr_overflow
guest_isr_overflow:
	pushal
	cld
	call	guest_epml_overflow
	popal
	iret

	.section .data
	.p2align 3
	.globl	gdt
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: flat code */
	.quad	0x00cf92000000ffff	/* 0x10: flat data */
	.quad	0			/* 0x18: TSS, filled in by kmain */
gdt_end:
	.globl	gdt_desc
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt

	.section .bss
	.p2align 4
	.globl	host_stack_top
host_stack:
	.skip	16384
host_stack_top:

	.section .note.GNU-stack, "", @progbits
