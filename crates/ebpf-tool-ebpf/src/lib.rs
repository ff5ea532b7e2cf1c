//! Empty on purpose: the kernel programs live in the `uprobe` binary target. This library
//! target lets `ebpf-tool` list the crate as a build-dependency so cargo rebuilds it when
//! the kernel code changes.
#![no_std]
