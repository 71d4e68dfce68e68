//! Decodes a Go function's x86-64 code to find where to probe it. Return probes
//! (uretprobes) rewrite the return address on the stack, which Go breaks when it moves
//! a goroutine's stack, so a function's returns, or the calls inside it that see its
//! results, get ordinary probes instead. A probe must sit on an instruction boundary:
//! the whole function is decoded, and any byte sequence that is not an instruction
//! fails the lookup rather than guessing.
//!
//! Where a probe sits decides what it costs: the kernel emulates a jump or a call at a
//! probe, but must single-step any other instruction out of line, a second trap (tens of
//! microseconds each on a nested VM). So the entry probe goes on the conditional jump of
//! the stack check, which leaves the argument registers untouched.
#![forbid(unsafe_code)]

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// What one function's code shows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Code {
    /// Virtual addresses of every near return.
    pub returns: Vec<u64>,
    /// The prologue compares the stack against the goroutine's stack guard through
    /// r14, as only register-ABI Go code does (Go 1.17+, where r14 holds the g).
    pub register_abi_stack_check: bool,
    /// The conditional jump right after that comparison: a probe there sees the
    /// arguments as at the entry, and costs one trap.
    pub stack_check_jump: Option<u64>,
    /// Direct calls: (address of the call, its target).
    pub calls: Vec<(u64, u64)>,
}

/// How many instructions the stack check may come after (`lea r12, [rsp-N]` first
/// for frames over 128 bytes, a longer sequence for huge ones).
const PROLOGUE: usize = 4;
/// g.stackguard0's offset in the runtime's g.
const STACKGUARD0: u64 = 0x10;

/// Decodes `code`, which starts at virtual address `vaddr`.
pub fn scan(code: &[u8], vaddr: u64) -> Result<Code, String> {
    let mut decoder = Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut out = Code::default();
    let mut count = 0usize;
    let mut guard_at = None;
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            let at = instr.ip().wrapping_sub(vaddr);
            let what = match decoder.last_error() {
                DecoderError::NoMoreBytes => "an instruction cut by the function's end",
                _ => "an invalid instruction",
            };
            return Err(format!("{what} at +{at:#x}"));
        }
        if count == 0 && instr.mnemonic() == Mnemonic::Int3 {
            return Err("the entry is padding (int3)".into());
        }
        if count < PROLOGUE && uses_stack_guard(&instr) {
            out.register_abi_stack_check = true;
            guard_at = Some(count);
        }
        if guard_at.is_some_and(|g| g + 1 == count) && is_conditional_jump(&instr) {
            out.stack_check_jump = Some(instr.ip());
        }
        if instr.mnemonic() == Mnemonic::Call && instr.op0_kind() == OpKind::NearBranch64 {
            out.calls.push((instr.ip(), instr.near_branch64()));
        }
        if instr.mnemonic() == Mnemonic::Ret {
            out.returns.push(instr.ip());
        }
        count += 1;
    }
    Ok(out)
}

fn is_conditional_jump(instr: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(
        instr.mnemonic(),
        Ja | Jae | Jb | Jbe | Je | Jne | Jg | Jge | Jl | Jle | Jo | Jno | Jp | Jnp | Js | Jns
    ) && instr.op0_kind() == OpKind::NearBranch64
}

fn uses_stack_guard(instr: &Instruction) -> bool {
    (0..instr.op_count()).any(|i| instr.op_kind(i) == OpKind::Memory)
        && instr.memory_base() == Register::R14
        && instr.memory_index() == Register::None
        && instr.memory_displacement64() == STACKGUARD0
}
