/* Boot entry: 32-bit protected mode, paging off, from PVH (ebx = hvm_start_info) or
   multiboot2 (eax = 0x36d76289, ebx = info). Builds identity page tables for the first
   4 GiB (2 MiB pages), enters long mode with SSE enabled, and calls hv_main(magic, info)
   on the boot stack. Nothing here touches memory above the image. */


/* ---- multiboot2 header (GRUB) ---- */
    .section .multiboot2, "a"
    .align 8
mb2_header:
    .long 0xE85250D6                 /* magic */
    .long 0                          /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long -(0xE85250D6 + 0 + (mb2_header_end - mb2_header))
    .align 8
    /* Framebuffer tag (optional): GRUB leaves a linear 1024x768x32 mode if it can (UEFI
       GOP or VBE) and says where in its information (tag 8), for the qube given it; the
       hypervisor itself never draws. */
    .short 5, 1                      /* type 5, flags: optional */
    .long 20
    .long 1024, 768, 32              /* width, height, depth */
    .align 8
    .short 0, 0                      /* end tag */
    .long 8
mb2_header_end:

/* ---- Xen PVH note (QEMU -kernel): XEN_ELFNOTE_PHYS32_ENTRY ---- */
    .section .note.Xen, "a"
    .align 4
    .long 4                          /* name size ("Xen\0") */
    .long 8                          /* descriptor size */
    .long 18                         /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .align 4
    .quad _start32

    .section .text.boot32, "ax"
    .code32
    .globl _start32
_start32:
    cli
    cld
    mov [boot_magic], eax
    mov [boot_info_addr], ebx

    /* Zero .bss (page tables, stacks, Rust statics): not every loader does. */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    /* PML4[0] -> PDPT; PDPT[0..4] -> four PDs; PD entries map 2 MiB each (P|W|PS). */
    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [boot_pml4], eax
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 1b
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    cmp ecx, 1536                    /* 3 GiB and up: the MMIO hole (APIC), uncached */
    jb 4f
    or eax, 0x18                     /* PWT | PCD */
4:
    mov [boot_pd + ecx * 8], eax
    mov edx, ecx
    shr edx, 11                      /* high dword: bits 32.. of (ecx << 21) */
    mov [boot_pd + ecx * 8 + 4], edx
    inc ecx
    cmp ecx, 2048
    jb 2b

    /* CR4: PAE | OSFXSR | OSXMMEXCPT */
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    /* EFER: LME | NXE */
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    /* CR0: PG | WP | NE | ET | MP | PE, EM clear */
    mov eax, cr0
    and eax, ~(1 << 2)
    or eax, (1 << 31) | (1 << 16) | (1 << 5) | (1 << 4) | (1 << 1) | 1
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    ljmp 0x08, offset _start64

    .code64
_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + boot_stack_top]
    xor ebp, ebp
    mov edi, [rip + boot_magic]
    mov esi, [rip + boot_info_addr]
    call hv_main
3:
    cli
    hlt
    jmp 3b

    .section .rodata.boot_gdt, "a"
    .align 16
boot_gdt:
    .quad 0
    .quad 0x00209A0000000000         /* 0x08: 64-bit code, DPL 0 */
    .quad 0x0000920000000000         /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .data.boot, "aw"
    .align 4
boot_magic:
    .long 0
boot_info_addr:
    .long 0

    .section .bss.boot, "aw", @nobits
    .align 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .align 16
    .globl boot_stack_bottom
boot_stack_bottom:
    /* 512 KiB: hv_main and Scheduler::new together take about 250 KiB of frames (the
       scheduler's qube table is built in one and moved into the other). */
    .skip 512 * 1024
boot_stack_top:

