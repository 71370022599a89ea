/* A guest's extended state around a world switch (see xstate.rs). Both take r8 = the
   vCPU's `Switch` block: +0 guest XSAVE (or FXSAVE) area, +8 host FXSAVE area, +16 the
   components XSAVE/XRSTOR move (the host's XCR0; 0 = no XSAVE: FXSAVE only), +24 the
   guest's XCR0. They clobber rax, rcx, rdx and r9, and touch no stack but their return
   address. */

    .section .text.xstate, "ax"
    .globl xstate_enter
    .globl xstate_exit

/* Saves the host's x87/SSE state, then loads every switched component of the guest's
   (XRSTOR writes each one: from the area, or its initial state) and the guest's XCR0. */
xstate_enter:
    mov rax, [r8 + 8]
    fxsave64 [rax]
    mov r9, [r8]
    mov rax, [r8 + 16]
    test rax, rax
    jz 1f
    mov rdx, rax
    shr rdx, 32
    xrstor64 [r9]
    mov rax, [r8 + 24]
    cmp rax, [r8 + 16]
    je 2f
    mov rdx, rax
    shr rdx, 32
    xor ecx, ecx
    xsetbv
2:
    ret
1:
    fxrstor64 [r9]
    ret

/* Records the XCR0 the guest left (it differs from +24 only where the CPU failed to
   intercept an XSETBV), puts the host's back, saves every switched component of the
   guest's, then restores the host's x87/SSE state. */
xstate_exit:
    mov r9, [r8]
    mov rax, [r8 + 16]
    test rax, rax
    jz 1f
    xor ecx, ecx
    xgetbv
    shl rdx, 32
    or rax, rdx
    mov [r8 + 24], rax
    cmp rax, [r8 + 16]
    je 2f
    mov rax, [r8 + 16]
    mov rdx, rax
    shr rdx, 32
    xor ecx, ecx
    xsetbv
2:
    mov rax, [r8 + 16]
    mov rdx, rax
    shr rdx, 32
    xsave64 [r9]
    jmp 3f
1:
    fxsave64 [r9]
3:
    mov rax, [r8 + 8]
    fxrstor64 [rax]
    ret
