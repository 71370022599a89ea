    .section .text.freestanding, "ax"

    // The copies and fills move eight bytes per iteration (`rep movsq`/`rep stosq`) and
    // the rest (fewer than eight) a byte at a time: under TCG every iteration of a `rep`
    // instruction is one executed instruction, so a 1514-byte frame costs 190, not 1514.

    .globl memcpy
    .type memcpy, @function
memcpy:
    mov rax, rdi
    mov rcx, rdx
    shr rcx, 3
    rep movsq
    mov ecx, edx
    and ecx, 7
    rep movsb
    ret

    .globl memset
    .type memset, @function
memset:
    mov r8, rdi
    movzx eax, sil
    mov r9, 0x0101010101010101
    imul rax, r9
    mov rcx, rdx
    shr rcx, 3
    rep stosq
    mov ecx, edx
    and ecx, 7
    rep stosb
    mov rax, r8
    ret

    .globl memmove
    .type memmove, @function
memmove:
    mov rax, rdi
    cmp rdi, rsi
    jbe 1f
    lea r8, [rsi + rdx]
    cmp rdi, r8
    jae 1f
    // The destination overlaps the source from above: copy backwards, the last (n mod 8)
    // bytes first, then the eight-byte words below them, highest first.
    lea rsi, [rsi + rdx - 1]
    lea rdi, [rdi + rdx - 1]
    mov ecx, edx
    and ecx, 7
    std
    rep movsb
    sub rsi, 7
    sub rdi, 7
    mov rcx, rdx
    shr rcx, 3
    rep movsq
    cld
    ret
1:
    mov rcx, rdx
    shr rcx, 3
    rep movsq
    mov ecx, edx
    and ecx, 7
    rep movsb
    ret

    .globl memcmp
    .type memcmp, @function
    .globl bcmp
    .type bcmp, @function
memcmp:
bcmp:
    xor eax, eax
    test rdx, rdx
    jz 3f
2:
    movzx eax, byte ptr [rdi]
    movzx ecx, byte ptr [rsi]
    sub eax, ecx
    jnz 3f
    inc rdi
    inc rsi
    dec rdx
    jnz 2b
3:
    ret

    .globl rust_eh_personality
    .type rust_eh_personality, @function
rust_eh_personality:
    ud2

