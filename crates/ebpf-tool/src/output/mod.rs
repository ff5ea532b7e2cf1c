//! Renderers: plain data in, text out. Nothing here touches the kernel.

pub mod escape;
pub mod text;
