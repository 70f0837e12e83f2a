/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * hook.S - enters Xen's own do_hvm_op while the payload has replaced it.
 *
 * Applying the payload writes a 5-byte "jmp ooh_spml_do_hvm_op" over the
 * first instructions of do_hvm_op. To run the original, replay exactly
 * those instructions here, then jump to the first one the patch left
 * intact. build-livepatch checks that the running build's do_hvm_op starts
 * with these bytes (41 55 41 54 55), and the payload asks Xen to check them
 * again before it patches (the livepatch_func expectation).
 */
	.section .text.ooh_spml_orig, "ax", @progbits
	.globl ooh_spml_orig_do_hvm_op
	.hidden ooh_spml_orig_do_hvm_op
	.type ooh_spml_orig_do_hvm_op, @function
ooh_spml_orig_do_hvm_op:
	endbr64
	push %r13
	push %r12
	push %rbp
	jmp do_hvm_op + 5
	.size ooh_spml_orig_do_hvm_op, . - ooh_spml_orig_do_hvm_op

	.section .note.GNU-stack, "", @progbits
