//! Every byte that crosses the kernel/user boundary: the run's `Config` (a read-only
//! global the loader fills before load), the argument model the kernel interprets
//! (`spec`), the ring-buffer records, and the keys of the aggregation maps.
//! `#![no_std]` so the eBPF crate can use it.
#![no_std]

pub mod config;
pub mod keys;
pub mod kfunc;
pub mod record;
pub mod spec;

pub use config::*;
pub use keys::*;
pub use record::*;
pub use spec::*;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY (all): `repr(C)`, `Copy`, made only of integers and arrays of integers with
    // no padding (asserted for the records and specs; Config, GroupKey, StackKey and Frame
    // are laid out largest-first with smaller fields after), so any bit pattern of the
    // right size is a valid value.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for ProbeSpec {}
    unsafe impl aya::Pod for GroupKey {}
    unsafe impl aya::Pod for StackKey {}
    unsafe impl aya::Pod for Frame {}
    unsafe impl aya::Pod for CallStack {}
    unsafe impl aya::Pod for DeepKey {}
}
