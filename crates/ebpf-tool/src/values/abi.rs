//! The default source of locations: the C calling convention of the traced code. It
//! says where argument N is at a function's entry and which register holds the return
//! value; every `Location` then becomes a `ValueSpec` the same way (see `spec_of`).
//! Other sources (USDT notes, Go's register ABI, DWARF) are other `Abi`s or build specs
//! directly, never another path through the kernel program.

use ebpf_tool_common::{
    MAX_HOPS, ValueSpec,
    reg::{aarch64, x86_64},
};

use super::{
    ValueError,
    registers::{self, NamedRegister},
    request::{Location, ValueRequest},
};

/// Where an argument is at the function's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgPlace {
    Register(u8),
    /// In memory at the stack pointer plus this many bytes.
    Stack(i64),
    /// A complete location with its own width and sign (a USDT note's).
    Spec(ValueSpec),
}

/// A calling convention.
pub trait Abi {
    /// Where integer argument `n` is at entry; `None` where this convention cannot say.
    fn arg(&self, n: usize) -> Option<ArgPlace>;
    /// The register that holds the (first word of the) return value, if a register does.
    fn return_register(&self) -> Option<u8>;
    /// The instruction set it is a convention of.
    fn machine(&self) -> Machine;
    /// A value named from the source (`r->len`), as the debug info locates it.
    fn named(&self, _text: &str) -> Option<ValueSpec> {
        None
    }
}

/// A function's convention plus what its debug info says of named values.
pub struct WithNames<'a> {
    pub abi: &'a dyn Abi,
    pub named: &'a [(String, ValueSpec)],
}

impl Abi for WithNames<'_> {
    fn arg(&self, n: usize) -> Option<ArgPlace> {
        self.abi.arg(n)
    }

    fn return_register(&self) -> Option<u8> {
        self.abi.return_register()
    }

    fn machine(&self) -> Machine {
        self.abi.machine()
    }

    fn named(&self, text: &str) -> Option<ValueSpec> {
        self.named
            .iter()
            .find(|(t, _)| t == text)
            .map(|(_, spec)| *spec)
    }
}

/// An instruction set: its stack pointer and the names of its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    X86_64,
    Aarch64,
}

impl Machine {
    pub fn stack_pointer(self) -> u8 {
        match self {
            Machine::X86_64 => x86_64::RSP,
            Machine::Aarch64 => aarch64::SP,
        }
    }

    /// A register by the name the user wrote.
    pub fn register(self, name: &str) -> Option<NamedRegister> {
        match self {
            Machine::X86_64 => registers::x86_64(name),
            Machine::Aarch64 => registers::aarch64(name),
        }
    }
}

/// x86-64 System V: rdi, rsi, rdx, rcx, r8, r9, then the stack above the return address.
pub struct SysV64;

impl Abi for SysV64 {
    fn arg(&self, n: usize) -> Option<ArgPlace> {
        const REGS: [u8; 6] = [
            x86_64::RDI,
            x86_64::RSI,
            x86_64::RDX,
            x86_64::RCX,
            x86_64::R8,
            x86_64::R9,
        ];
        Some(match REGS.get(n) {
            Some(&reg) => ArgPlace::Register(reg),
            // At entry [rsp] is the return address; argument 6 is above it.
            None => ArgPlace::Stack(8 * (n as i64 - 6 + 1)),
        })
    }

    fn return_register(&self) -> Option<u8> {
        Some(x86_64::RAX)
    }

    fn machine(&self) -> Machine {
        Machine::X86_64
    }
}

/// AArch64 AAPCS64: x0..x7, then the stack at sp.
pub struct Aapcs64;

impl Abi for Aapcs64 {
    fn arg(&self, n: usize) -> Option<ArgPlace> {
        Some(if n < 8 {
            ArgPlace::Register(aarch64::X0 + n as u8)
        } else {
            ArgPlace::Stack(8 * (n as i64 - 8))
        })
    }

    fn return_register(&self) -> Option<u8> {
        Some(aarch64::X0)
    }

    fn machine(&self) -> Machine {
        Machine::Aarch64
    }
}

/// Go's register ABI on amd64 (ABIInternal, Go 1.17+). `-a N` is the Nth integer word
/// of the arguments as the compiler assigns them: an int, a pointer or a bool takes one
/// word, a string two (pointer, length), a slice three (pointer, length, capacity), an
/// interface two (type, data); up to nine words go in RAX, RBX, RCX, RDI, RSI, R8, R9,
/// R10, R11 (floats use X0-X14 and take no word). Words past the ninth, and arguments
/// too big for the registers left, go on the stack, where their place depends on the
/// whole signature: not supported.
pub struct GoRegisters;

/// The registers of Go's integer arguments and results, in order.
pub const GO_INT_REGISTERS: [u8; 9] = [
    x86_64::RAX,
    x86_64::RBX,
    x86_64::RCX,
    x86_64::RDI,
    x86_64::RSI,
    x86_64::R8,
    x86_64::R9,
    x86_64::R10,
    x86_64::R11,
];

impl Abi for GoRegisters {
    fn arg(&self, n: usize) -> Option<ArgPlace> {
        GO_INT_REGISTERS.get(n).map(|&reg| ArgPlace::Register(reg))
    }

    fn return_register(&self) -> Option<u8> {
        Some(x86_64::RAX)
    }

    fn machine(&self) -> Machine {
        Machine::X86_64
    }
}

/// Go's stack ABI (ABI0: assembly functions, and every function before Go 1.17): the
/// argument words lie above the return address, results after them.
pub struct GoStack;

impl Abi for GoStack {
    fn arg(&self, n: usize) -> Option<ArgPlace> {
        Some(ArgPlace::Stack(8 * (n as i64 + 1)))
    }

    fn return_register(&self) -> Option<u8> {
        None
    }

    fn machine(&self) -> Machine {
        Machine::X86_64
    }
}

/// A USDT site: each argument where its note says; `None` for one whose note this
/// cannot read (asking for it is an error said before this is built).
pub struct UsdtSite<'a>(pub &'a [Option<ValueSpec>]);

impl Abi for UsdtSite<'_> {
    fn arg(&self, n: usize) -> Option<ArgPlace> {
        self.0.get(n).copied().flatten().map(ArgPlace::Spec)
    }

    fn return_register(&self) -> Option<u8> {
        None
    }

    fn machine(&self) -> Machine {
        Machine::X86_64
    }
}

/// The C ABI of the machine this runs on.
pub fn native() -> &'static dyn Abi {
    if cfg!(target_arch = "aarch64") {
        &Aapcs64
    } else {
        &SysV64
    }
}

/// The spec that reads `request`, with `abi` placing arguments and registers.
pub fn spec_of(abi: &dyn Abi, request: &ValueRequest) -> Result<ValueSpec, ValueError> {
    let location = &request.location;
    let mut spec = innermost(abi, location)?;
    // A USDT argument asked for by number alone keeps the width and sign its note says;
    // a named value, those its type says.
    if let Location::Arg(n) = location
        && matches!(abi.arg(*n), Some(ArgPlace::Spec(_)))
        && !request.typed
    {
        return Ok(spec);
    }
    if matches!(location, Location::Named(_)) && !request.typed {
        return Ok(spec);
    }
    if spec.reads as usize > MAX_HOPS {
        return Err(ValueError::TooDeep {
            key: location.to_string(),
        });
    }
    // A register named at a width (%edi) keeps it unless a type was written.
    if !matches!(location, Location::Register(_)) || request.typed {
        spec.size = request.ty.bytes();
    }
    spec.signed = request.ty.signed() as u8;
    Ok(spec)
}

/// Builds the spec from the inside out: a register or stack slot, then each dereference
/// adds its offset to the address of the next read.
fn innermost(abi: &dyn Abi, location: &Location) -> Result<ValueSpec, ValueError> {
    match location {
        Location::Arg(n) => Ok(
            match abi.arg(*n).ok_or(ValueError::NoSuchArgument { n: *n })? {
                ArgPlace::Register(reg) => ValueSpec::register(reg, 8, false),
                ArgPlace::Spec(spec) => spec,
                ArgPlace::Stack(offset) => ValueSpec {
                    base: abi.machine().stack_pointer(),
                    displacement: offset,
                    reads: 1,
                    ..ValueSpec::NONE
                },
            },
        ),
        Location::Register(name) => {
            let reg = abi
                .machine()
                .register(name)
                .ok_or_else(|| ValueError::UnknownRegister { name: name.clone() })?;
            Ok(ValueSpec::register(reg.number, reg.size, false))
        }
        Location::Named(text) => abi
            .named(text)
            .ok_or_else(|| ValueError::NoDebugInfoValue { text: text.clone() }),
        Location::Deref { offset, inner } => {
            let mut spec = innermost(abi, inner)?;
            if spec.reads == 0 {
                spec.displacement = spec.displacement.wrapping_add(*offset);
            } else {
                let hop = spec.reads as usize - 1;
                let offset = i32::try_from(*offset).map_err(|_| ValueError::OffsetTooLarge {
                    key: location.to_string(),
                })?;
                if hop >= MAX_HOPS {
                    return Err(ValueError::TooDeep {
                        key: location.to_string(),
                    });
                }
                spec.after[hop] = offset;
            }
            spec.reads += 1;
            // Intermediate reads are pointers; `spec_of` sets the last one's width.
            spec.size = 8;
            Ok(spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ValueSpec {
        spec_of(&SysV64, &text.parse().unwrap()).unwrap()
    }

    #[test]
    fn register_arguments() {
        let s = spec("0");
        assert_eq!((s.base, s.reads, s.size, s.signed), (x86_64::RDI, 0, 8, 0));
        let s = spec("5:i32");
        assert_eq!((s.base, s.size, s.signed), (x86_64::R9, 4, 1));
    }

    #[test]
    fn stack_arguments_above_the_return_address() {
        let s = spec("6");
        assert_eq!((s.base, s.displacement, s.reads), (x86_64::RSP, 8, 1));
        let s = spec("7:i32");
        assert_eq!((s.displacement, s.size, s.signed), (16, 4, 1));
    }

    #[test]
    fn a_field_two_pointers_deep() {
        // *(u32 *)(*(u64 *)(rdi + 16) + 8)
        let s = spec("+8(+16(arg0)):u32");
        assert_eq!(
            (s.base, s.displacement, s.reads, s.size),
            (x86_64::RDI, 16, 2, 4)
        );
        assert_eq!(s.after[0], 8);
        // A dereference of a stack argument: its slot is the first read.
        let s = spec("+4(arg6)");
        assert_eq!(
            (s.base, s.displacement, s.reads, s.after[0]),
            (x86_64::RSP, 8, 2, 4)
        );
    }

    #[test]
    fn register_names_keep_their_width() {
        let s = spec("%edi");
        assert_eq!((s.base, s.size), (x86_64::RDI, 4));
        assert_eq!(spec("%edi:u64").size, 8);
        assert!(matches!(
            spec_of(&SysV64, &"%xmm0".parse().unwrap()),
            Err(ValueError::UnknownRegister { .. })
        ));
    }

    #[test]
    fn aarch64_places() {
        assert_eq!(Aapcs64.arg(7), Some(ArgPlace::Register(7)));
        assert_eq!(Aapcs64.arg(9), Some(ArgPlace::Stack(8)));
    }

    #[test]
    fn go_places() {
        let s = spec_of(&GoRegisters, &"1".parse().unwrap()).unwrap();
        assert_eq!(s.base, x86_64::RBX);
        assert_eq!(
            spec_of(&GoRegisters, &"8".parse().unwrap()).unwrap().base,
            x86_64::R11
        );
        assert_eq!(
            spec_of(&GoRegisters, &"9".parse().unwrap()),
            Err(ValueError::NoSuchArgument { n: 9 })
        );
        let s = spec_of(&GoStack, &"2".parse().unwrap()).unwrap();
        assert_eq!((s.base, s.displacement, s.reads), (x86_64::RSP, 24, 1));
        assert_eq!(GoStack.return_register(), None);
    }
}
