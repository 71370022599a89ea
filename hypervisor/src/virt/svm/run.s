/* The SVM world switch.
   svm_run(regs: *mut GuestRegs, vmcb_pa: u64, host_state_pa: u64, switch: *mut Switch)
   Called with GIF clear (the caller's CLGI: see SvmVcpu::enter). Saves the host's
   callee-saved registers and x87/SSE state and loads the guest's extended
   state and XCR0 (xstate_enter, ../xstate.s), runs the guest with VMRUN (GIF cleared around
   the switch, so the host takes the interrupt that ended the guest's run only after its
   own state is back), then saves the guest's registers and extended state and restores the
   host's (xstate_exit). VMLOAD/VMSAVE move the "hidden" state (FS/GS/TR/LDTR bases,
   KernelGsBase, syscall MSRs) between the VMCB and the CPU, with a separate page holding
   the host's copy.
   GuestRegs layout: register n (x86 encoding) at 8 * n; rax and rsp (slots 0 and 4) are
   in the VMCB. */

    .section .text.svm_run, "ax"
    .globl svm_run
svm_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi                    /* [rsp+24] regs */
    push rsi                    /* [rsp+16] vmcb */
    push rdx                    /* [rsp+8]  host state page */
    push rcx                    /* [rsp+0]  switch */

    mov r8, rcx
    call xstate_enter

    mov rax, [rsp + 8]
    vmsave rax
    mov rax, [rsp + 16]
    vmload rax

    mov rdi, [rsp + 24]
    mov rbx, [rdi + 24]
    mov rcx, [rdi + 8]
    mov rdx, [rdi + 16]
    mov rsi, [rdi + 48]
    mov rbp, [rdi + 40]
    mov r8,  [rdi + 64]
    mov r9,  [rdi + 72]
    mov r10, [rdi + 80]
    mov r11, [rdi + 88]
    mov r12, [rdi + 96]
    mov r13, [rdi + 104]
    mov r14, [rdi + 112]
    mov r15, [rdi + 120]
    mov rdi, [rdi + 56]

    vmrun rax                   /* rax = VMCB; on #VMEXIT rax and rsp are the host's again */

    vmsave rax
    push rdi                    /* guest rdi; the frame above moves by 8 */
    mov rdi, [rsp + 32]
    mov [rdi + 24], rbx
    mov [rdi + 8], rcx
    mov [rdi + 16], rdx
    mov [rdi + 48], rsi
    mov [rdi + 40], rbp
    mov [rdi + 64], r8
    mov [rdi + 72], r9
    mov [rdi + 80], r10
    mov [rdi + 88], r11
    mov [rdi + 96], r12
    mov [rdi + 104], r13
    mov [rdi + 112], r14
    mov [rdi + 120], r15
    pop rax
    mov [rdi + 56], rax

    mov rax, [rsp + 8]
    vmload rax
    mov r8, [rsp + 0]
    call xstate_exit
    stgi                        /* the pending host interrupt (if any) is taken here */

    add rsp, 32
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
