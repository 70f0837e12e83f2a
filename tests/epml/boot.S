/* SPDX-License-Identifier: Apache-2.0 */
/*
 * boot.S - 512-byte disk boot sector for the EPML test image.
 *
 * Bochs boots through its BIOS, not a multiboot loader, so the image
 * carries this sector: it reads the kernel (the next KERNEL_SECTORS
 * sectors) to 0x10000 with INT 13h extended reads, enters flat 32-bit
 * protected mode, copies the kernel to 1 MiB and jumps to the entry
 * address of its multiboot header (the same image also boots with any
 * multiboot loader). Any failure writes a letter to port 0xE9 and asks
 * Bochs to shut down through port 0x8900, so the test never hangs here.
 */
#define KERNEL_SECTORS	128	/* 64 KiB; build-image checks the kernel fits */
#define CHUNK		64	/* sectors per INT 13h call (32 KiB) */
#define LOAD_SEG	0x1000
#define KERNEL_BASE	0x100000

	.code16
	.section .text
	.globl	_start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7c00, %sp
	movb	%dl, boot_drive
	sti

	movw	$(KERNEL_SECTORS / CHUNK), %cx
read_loop:
	pushw	%cx
	movw	$dap, %si
	movb	$0x42, %ah
	movb	boot_drive, %dl
	int	$0x13
	popw	%cx
	jc	disk_error
	addw	$(CHUNK * 512 / 16), dap_seg
	addw	$CHUNK, dap_lba
	loop	read_loop

	/* Fast A20, then protected mode. */
	inb	$0x92, %al
	orb	$2, %al
	andb	$0xfe, %al
	outb	%al, $0x92

	cli
	lgdt	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmp	$0x08, $pm32

disk_error:
	movb	$'D', %al
	outb	%al, $0xe9
	jmp	shutdown16

	.code32
pm32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	$0x90000, %esp
	cld
	movl	$(LOAD_SEG * 16), %esi
	movl	$KERNEL_BASE, %edi
	movl	$(KERNEL_SECTORS * 512 / 4), %ecx
	rep movsl
	/* Multiboot header at the start of the kernel: entry_addr at +28. */
	cmpl	$0x1badb002, KERNEL_BASE
	jne	bad_kernel
	movl	$0x2badb002, %eax
	jmp	*(KERNEL_BASE + 28)

bad_kernel:
	movb	$'K', %al
	outb	%al, $0xe9
	movw	$0x8900, %dx
	movl	$shutdown_str, %esi
1:	movb	(%esi), %al
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	incl	%esi
	jmp	1b
2:	cli
	hlt
	jmp	2b

	.code16
shutdown16:
	movw	$0x8900, %dx
	movw	$shutdown_str, %si
1:	movb	(%si), %al
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	incw	%si
	jmp	1b
2:	cli
	hlt
	jmp	2b

shutdown_str:
	.asciz	"Shutdown"
boot_drive:
	.byte	0

	.p2align 2
dap:
	.byte	16, 0
	.word	CHUNK
	.word	0		/* offset */
dap_seg:
	.word	LOAD_SEG
dap_lba:
	.long	1, 0

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: flat code */
	.quad	0x00cf92000000ffff	/* 0x10: flat data */
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

	.org	510
	.byte	0x55, 0xaa

	.section .note.GNU-stack, "", @progbits
