/* Application processor start. The boot CPU copies ap_trampoline..ap_trampoline_end to
   physical AP_TRAMPOLINE_BASE (below 1 MiB, page aligned: the SIPI vector is its page
   number) and sends INIT-SIPI-SIPI. The AP wakes in real mode at CS:IP = base:0, goes through
   32-bit protected mode to long mode with the boot CPU's page tables (boot_pml4, entry.s),
   then jumps into the image at ap_entry64, which loads the stack the boot CPU left in
   ap_stack_top and calls ap_main(ap_cpu_index). The trampoline is assembled for its copy's
   address, so every address inside it is AP_TRAMPOLINE_BASE + (label - ap_trampoline). One
   AP starts at a time: the boot CPU waits for ap_main's "alive" before the next one.
   AT&T syntax (arch/x86/mod.rs includes it so): LLVM's Intel parser refuses a difference
   of labels in an operand. */

    .set AP_TRAMPOLINE_BASE, 0x8000

    .section .text.ap_trampoline, "ax"
    .code16
    .globl ap_trampoline
ap_trampoline:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl AP_TRAMPOLINE_BASE + (ap_gdt_ptr - ap_trampoline)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(AP_TRAMPOLINE_BASE + (ap_pm32 - ap_trampoline))

    .code32
ap_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    /* As entry.s: CR4 PAE | OSFXSR | OSXMMEXCPT; the boot page tables; EFER LME | NXE;
       CR0 PG | WP | NE | ET | MP | PE with EM clear, and CD and NW clear: INIT leaves
       an AP with caching disabled (CR0 0x60000010), and the boot CPU's firmware cleared them
       only on the boot CPU. */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    andl $~((1 << 30) | (1 << 29) | (1 << 2)), %eax
    orl $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 4) | (1 << 1) | 1), %eax
    movl %eax, %cr0
    ljmpl $0x18, $(AP_TRAMPOLINE_BASE + (ap_lm64 - ap_trampoline))

    .code64
ap_lm64:
    movabsq $ap_entry64, %rax
    jmpq *%rax

    .align 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF         /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF         /* 0x10: data */
    .quad 0x00209A0000000000         /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdt_ptr:
    .short ap_gdt_end - ap_gdt - 1
    .long AP_TRAMPOLINE_BASE + (ap_gdt - ap_trampoline)
    .globl ap_trampoline_end
ap_trampoline_end:

    .section .text.ap_entry64, "ax"
ap_entry64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    /* The hypervisor's own tables, which map the stack wherever it is (the boot tables
       map only the first 4 GiB). */
    movq ap_cr3(%rip), %rax
    testq %rax, %rax
    jz 5f
    movq %rax, %cr3
5:
    movq ap_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    movl ap_cpu_index(%rip), %edi
    call ap_main
4:
    cli
    hlt
    jmp 4b

    .section .data.ap_boot, "aw"
    .align 8
    .globl ap_stack_top
ap_stack_top:
    .quad 0
    .globl ap_cpu_index
ap_cpu_index:
    .long 0
    .align 8
    .globl ap_cr3
ap_cr3:
    .quad 0
