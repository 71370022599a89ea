/* The VMX world switch.
   vmx_run(regs: *mut GuestRegs, launched: u64, switch: *mut Switch) -> u64
   Saves the host's callee-saved registers, RFLAGS and x87/SSE state and loads the guest's
   extended state and XCR0 (xstate_enter, ../xstate.s), disables interrupts,
   records the stack pointer in the VMCS (HOST_RSP), loads the guest's registers and enters
   it with VMLAUNCH (first run after a VMCLEAR) or VMRESUME.

   A VM exit resumes at vmx_exit (HOST_RIP) on the same stack with every general-purpose
   register still the guest's and RFLAGS = 2 (IF clear): the guest's registers and extended
   state are saved, the host's restored (xstate_exit), and the saved RFLAGS brings IF back, so the host
   takes the interrupt that ended the run (left pending: no acknowledge on exit) right there.
   Returns 0 after an exit; 1 (VMfailValid) or 2 (VMfailInvalid) when the entry itself
   failed and the CPU fell through to the next instruction.

   GuestRegs layout: register n (x86 encoding) at 8 * n; rsp (slot 4) is in the VMCS. */

    .section .text.vmx_run, "ax"
    .globl vmx_run
    .globl vmx_exit
vmx_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    pushfq                      /* host RFLAGS (IF) */
    cli
    push rdi                    /* [rsp+16] regs */
    push rsi                    /* [rsp+8]  launched */
    push rdx                    /* [rsp+0]  switch */

    mov r8, rdx
    call xstate_enter
    mov rdi, [rsp + 16]
    mov rsi, [rsp + 8]

    mov rax, 0x6C14             /* HOST_RSP: a VM exit comes back with this stack */
    vmwrite rax, rsp

    test rsi, rsi               /* launched? the flags survive the moves below */
    mov rax, [rdi + 0]
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
    jnz 1f
    vmlaunch
    jmp 2f
1:
    vmresume
2:
    /* Only reached when the entry failed: ZF=1 VMfailValid, CF=1 VMfailInvalid. The
       guest's extended state goes back to its area unchanged, the host's XCR0 and x87/SSE
       state come back. */
    mov eax, 2
    mov ecx, 1
    cmovz eax, ecx
    push rax
    mov r8, [rsp + 8]
    call xstate_exit
    pop rax
    jmp 3f

vmx_exit:
    push rdi                    /* guest rdi; the frame above moves by 8 */
    mov rdi, [rsp + 24]
    mov [rdi + 0], rax
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

    mov r8, [rsp + 0]
    call xstate_exit
    xor eax, eax
3:
    add rsp, 24
    popfq                       /* IF back: a pending host interrupt is taken here */
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
