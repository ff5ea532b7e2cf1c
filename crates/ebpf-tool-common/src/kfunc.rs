//! Placeholder helper numbers the kernel programs call where they mean a kernel function
//! (kfunc); the loader rewrites each into a call of that function by its BTF id. No
//! helper has numbers this high (there are about 210), so an unpatched call is refused by
//! the verifier rather than calling something else.

/// `bool bpf_session_is_return(void)`.
pub const SESSION_IS_RETURN: i32 = 0x7ff0_0001;
/// `__u64 *bpf_session_cookie(void)`.
pub const SESSION_COOKIE: i32 = 0x7ff0_0002;
