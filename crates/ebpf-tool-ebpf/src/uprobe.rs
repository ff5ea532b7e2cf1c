//! Kernel half of `ebpf-tool uprobe`. `hello_uprobe` runs on function entry and
//! `hello_uretprobe` on return. What they do is chosen by `CONFIG`, a read-only global the
//! loader fills before load: the verifier sees its fields as constants and drops the
//! branches a run does not use, so a plain trace pays for none of the other modes.
//!
//! - plain: one `CallEvent` per call into `EVENTS` at entry;
//! - `--ret`/`--latency`: entry saves the arguments and a timestamp on the thread's call
//!   stack (`CALLS`), return pops it and writes one record with arguments, return value and
//!   latency;
//! - `--count`, `--hist`, `--latency` histograms and `--stacks` aggregate in per-CPU maps
//!   without any record, so they cost no ring-buffer traffic.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext,
        bindings::{
            BPF_F_USER_STACK, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        },
        helpers::{
            bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
            bpf_ktime_get_ns, bpf_probe_read_user,
            generated::{self, bpf_get_attach_cookie, bpf_probe_read_user_str},
        },
        macros::{map, uprobe, uretprobe},
        maps::{LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
        programs::{ProbeContext, RetProbeContext, tracing::StackIdContext as _},
    };
    use ebpf_tool_common::{
        COMM_LEN, CallEvent, CallEventWithStrings, CallStack, Config, CountKey, EVENT_NO_ENTRY,
        EVENT_STR_TRUNCATED, EVENTS_RING_BYTES, HIST_BUCKETS, HIST_COUNT, HIST_LATENCY, HIST_MAX,
        HIST_MIN, HIST_SLOTS, HIST_SUM, HISTS_PER_PROBE, KIND_CALL, KIND_ENTRY, MAX_ARGS,
        MAX_STR_ARGS, STR_CAP, StackKey, WAKEUP_BYTES, by, flags, lost, op,
    };

    /// This run's settings; the loader overwrites the whole struct before load.
    #[unsafe(no_mangle)]
    static CONFIG: Config = Config::DEFAULT;

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

    /// What could not be recorded, by cause (`lost::*`), per CPU so counting never contends.
    #[map]
    static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::SLOTS, 0);

    /// Each thread's calls in progress, for pairing returns with entries. LRU, so threads
    /// that die mid-call cannot fill it.
    #[map]
    static CALLS: LruHashMap<u32, CallStack> = LruHashMap::with_max_entries(16384, 0);

    /// A zeroed `CallStack` to insert from: too big for the 512-byte BPF stack.
    #[map]
    static EMPTY_CALL_STACK: PerCpuArray<CallStack> = PerCpuArray::with_max_entries(1, 0);

    /// `--count` by function: one slot per probe (the loader sizes it).
    #[map]
    static FUNC_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    /// `--count --by pid|tid|comm`.
    #[map]
    static COUNTS: PerCpuHashMap<CountKey, u64> = PerCpuHashMap::with_max_entries(65536, 0);

    /// Log2 histograms, `HISTS_PER_PROBE` per probe (loader-sized); one value is a whole
    /// histogram so an update is one lookup.
    #[map]
    static HISTS: PerCpuArray<[u64; HIST_SLOTS]> =
        PerCpuArray::with_max_entries(HISTS_PER_PROBE as u32, 0);

    /// User stacks for `--stacks` (loader-sized).
    #[map]
    static STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

    #[map]
    static STACK_COUNTS: PerCpuHashMap<StackKey, u64> = PerCpuHashMap::with_max_entries(1, 0);

    #[inline(always)]
    fn config() -> &'static Config {
        // SAFETY: a volatile read keeps the compiler from folding the default value in;
        // the loader has replaced it, and the map holding it is frozen read-only.
        unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
    }

    #[inline(always)]
    fn has(flag: u32) -> bool {
        config().flags & flag != 0
    }

    /// The task filters, which hold alike at entry and at return.
    #[inline(always)]
    fn task_wanted(tgid: u32, tid: u32) -> bool {
        let cfg = config();
        if cfg.tool_tgid != 0 && tgid == cfg.tool_tgid {
            return false; // never trace ourselves
        }
        if cfg.target_tgid != 0 && tgid != cfg.target_tgid {
            return false;
        }
        if cfg.target_tid != 0 && tid != cfg.target_tid {
            return false;
        }
        if cfg.target_uid != u32::MAX && bpf_get_current_uid_gid() as u32 != cfg.target_uid {
            return false;
        }
        if cfg.flags & flags::FILTER_COMM != 0 {
            let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
            if comm != cfg.comm {
                return false;
            }
        }
        true
    }

    #[inline(always)]
    fn arg_wanted(args: Args<'_>) -> bool {
        let cfg = config();
        if cfg.flags & flags::FILTER_ARG == 0 {
            return true;
        }
        let value = args.get(cfg.arg_filter_index as usize);
        let rhs = cfg.arg_filter_value;
        let ord = if cfg.flags & flags::FILTER_ARG_SIGNED != 0 {
            (value as i64).cmp(&(rhs as i64))
        } else {
            value.cmp(&rhs)
        };
        use core::cmp::Ordering::*;
        match cfg.arg_filter_op {
            op::EQ => ord == Equal,
            op::NE => ord != Equal,
            op::LT => ord == Less,
            op::LE => ord != Greater,
            op::GT => ord == Greater,
            _ => ord != Less,
        }
    }

    /// Argument register `n`. The verifier refuses a context pointer plus a computed
    /// offset, which is what the compiler makes of `ctx.arg(n)` (even of a match of
    /// loads) when `n` comes from CONFIG; so all six are loaded at constant offsets,
    /// volatile so they cannot be merged back into one, and the value is picked after.
    #[inline(always)]
    fn register_arg(ctx: &ProbeContext, n: usize) -> u64 {
        #[cfg(bpf_target_arch = "x86_64")]
        {
            use core::ptr::{addr_of, read_volatile};
            let regs = ctx.regs;
            // SAFETY: the kernel hands the program the probed task's saved registers.
            let all = unsafe {
                [
                    read_volatile(addr_of!((*regs).rdi)),
                    read_volatile(addr_of!((*regs).rsi)),
                    read_volatile(addr_of!((*regs).rdx)),
                    read_volatile(addr_of!((*regs).rcx)),
                    read_volatile(addr_of!((*regs).r8)),
                    read_volatile(addr_of!((*regs).r9)),
                ]
            };
            match n {
                0 => all[0],
                1 => all[1],
                2 => all[2],
                3 => all[3],
                4 => all[4],
                5 => all[5],
                _ => 0,
            }
        }
        #[cfg(not(bpf_target_arch = "x86_64"))]
        {
            ctx.arg(n).unwrap_or(0)
        }
    }

    /// Where a record's arguments come from.
    #[derive(Clone, Copy)]
    enum Args<'a> {
        /// The probed function's argument registers (at entry).
        Regs(&'a ProbeContext),
        /// Saved at entry (at the return of a paired call).
        Saved(&'a [u64; MAX_ARGS]),
        /// Not known (a return whose entry was not seen).
        Unknown,
    }

    impl Args<'_> {
        #[inline(always)]
        fn get(self, n: usize) -> u64 {
            match self {
                Args::Regs(ctx) => register_arg(ctx, n),
                Args::Saved(saved) => saved.get(n).copied().unwrap_or(0),
                Args::Unknown => 0,
            }
        }

        /// Writes all of them into `out` (a record or a saved frame), one by one.
        #[inline(always)]
        fn write_to(self, out: &mut [u64; MAX_ARGS]) {
            for (n, slot) in out.iter_mut().enumerate() {
                *slot = self.get(n);
            }
        }
    }

    #[uprobe]
    pub fn hello_uprobe(ctx: ProbeContext) -> u32 {
        // Each step runs only when this run's CONFIG needs it; the verifier prunes the
        // rest, so `--count` on one function costs little more than the floor. Arguments
        // are read from the registers where they are used: no array, no memset.
        let (tgid, tid) = if needs_task_ids() {
            let pid_tgid = bpf_get_current_pid_tgid();
            ((pid_tgid >> 32) as u32, pid_tgid as u32)
        } else {
            (0, 0)
        };
        if !task_wanted(tgid, tid) {
            return 0;
        }
        let probe_id = cookie(&ctx);
        let args = Args::Regs(&ctx);
        let wanted = arg_wanted(args);
        let stack_id = if wanted {
            aggregate_entry(&ctx, probe_id, tgid, tid, args)
        } else {
            -1
        };
        if has(flags::PAIR_RETURNS) {
            push_frame(tid, args, wanted, stack_id);
            return 0;
        }
        if wanted && has(flags::EMIT_EVENTS) {
            emit(&Call {
                kind: KIND_ENTRY,
                tgid,
                tid,
                probe_id,
                args,
                ret: 0,
                latency_ns: 0,
                start_ns: 0,
                stack_id,
                flags: 0,
            });
        }
        0
    }

    /// Whether anything in this run looks at the task's ids.
    #[inline(always)]
    fn needs_task_ids() -> bool {
        let cfg = config();
        cfg.tool_tgid != 0
            || cfg.target_tgid != 0
            || cfg.target_tid != 0
            || cfg.flags & (flags::EMIT_EVENTS | flags::PAIR_RETURNS | flags::STACKS) != 0
            || (cfg.flags & flags::COUNT != 0 && cfg.count_by != by::FUNC)
    }

    #[uretprobe]
    pub fn hello_uretprobe(ctx: RetProbeContext) -> u32 {
        let pid_tgid = bpf_get_current_pid_tgid();
        let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
        if !task_wanted(tgid, tid) {
            return 0;
        }
        let now = unsafe { bpf_ktime_get_ns() };
        let probe_id = cookie(&ctx);
        let Some(stack) = CALLS.get_ptr_mut(tid) else {
            return unpaired(tgid, tid, probe_id, ctx.ret());
        };
        // SAFETY: a value of this thread's own entry in CALLS; only this thread pushes and
        // pops it, and uprobe handlers of one thread never run concurrently.
        let stack = unsafe { &mut *stack };
        if stack.depth == 0 {
            return unpaired(tgid, tid, probe_id, ctx.ret());
        }
        stack.depth -= 1;
        let depth = stack.depth as usize;
        let Some(frame) = stack.frames.get(depth) else {
            return unpaired(tgid, tid, probe_id, ctx.ret()); // nested beyond MAX_DEPTH
        };
        if frame.wanted == 0 {
            return 0;
        }
        let latency = now.saturating_sub(frame.timestamp_ns);
        if has(flags::HIST_LATENCY) {
            hist_add(probe_id, HIST_LATENCY, latency);
        }
        if has(flags::EMIT_EVENTS) {
            emit(&Call {
                kind: KIND_CALL,
                tgid,
                tid,
                probe_id,
                args: Args::Saved(&frame.args),
                ret: ctx.ret(),
                latency_ns: latency,
                start_ns: frame.timestamp_ns,
                stack_id: frame.stack_id,
                flags: 0,
            });
        }
        0
    }

    /// A return whose entry was not seen (attached mid-call, or nested too deep).
    #[inline(always)]
    fn unpaired(tgid: u32, tid: u32, probe_id: u32, ret: u64) -> u32 {
        count_lost(lost::UNPAIRED);
        // Without the entry the argument filter cannot be applied: report only when there
        // is none, flagged so nobody mistakes the zero arguments for real ones.
        if !has(flags::FILTER_ARG) && has(flags::EMIT_EVENTS) {
            emit(&Call {
                kind: KIND_CALL,
                tgid,
                tid,
                probe_id,
                args: Args::Unknown,
                ret,
                latency_ns: 0,
                start_ns: 0,
                stack_id: -1,
                flags: EVENT_NO_ENTRY,
            });
        }
        0
    }

    #[inline(always)]
    fn cookie<C: EbpfContext>(ctx: &C) -> u32 {
        if config().probes <= 1 {
            return 0;
        }
        // SAFETY: the helper only reads the program context it is given.
        unsafe { bpf_get_attach_cookie(ctx.as_ptr()) as u32 }
    }

    /// The in-kernel aggregations done at entry; returns the stack id when stacks are on.
    #[inline(always)]
    fn aggregate_entry(
        ctx: &ProbeContext,
        probe_id: u32,
        tgid: u32,
        tid: u32,
        args: Args<'_>,
    ) -> i32 {
        let cfg = config();
        if cfg.flags & flags::COUNT != 0 {
            count_call(probe_id, tgid, tid);
        }
        if cfg.flags & flags::HIST_ARG != 0 {
            hist_add(
                probe_id,
                ebpf_tool_common::HIST_ARG,
                args.get(cfg.hist_arg_index as usize),
            );
        }
        if cfg.flags & flags::STACKS == 0 {
            return -1;
        }
        match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
            Ok(id) => {
                let caller = if cfg.flags & flags::CALLER_AT_ENTRY != 0 {
                    return_address(ctx)
                } else {
                    0
                };
                let mut key = StackKey {
                    caller,
                    probe_id,
                    stack_id: id as i32,
                    tgid,
                    _pad: 0,
                    comm: [0; COMM_LEN],
                };
                current_comm(&mut key.comm);
                add_to(&STACK_COUNTS, &key, lost::STACKS_FAILED);
                id as i32
            }
            Err(err) => {
                count_lost(lost::STACKS_FAILED);
                err
            }
        }
    }

    /// Where the probed function will return to, read at its entry: on x86-64 the word at
    /// the stack pointer, on AArch64 the link register.
    #[inline(always)]
    fn return_address(ctx: &ProbeContext) -> u64 {
        // SAFETY: the kernel hands the program the probed task's saved registers.
        let regs = unsafe { &*ctx.regs };
        #[cfg(bpf_target_arch = "x86_64")]
        {
            // SAFETY: a fault-tolerant read of the task's own stack.
            unsafe { bpf_probe_read_user(regs.rsp as *const u64) }.unwrap_or(0)
        }
        #[cfg(bpf_target_arch = "aarch64")]
        {
            regs.regs[30]
        }
        #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
        {
            let _ = regs;
            0
        }
    }

    #[inline(always)]
    fn count_call(probe_id: u32, tgid: u32, tid: u32) {
        let cfg = config();
        if cfg.count_by == by::FUNC {
            if let Some(slot) = FUNC_COUNTS.get_ptr_mut(probe_id) {
                // SAFETY: a per-CPU slot; preemption is off while the program runs.
                unsafe { *slot += 1 };
            }
            return;
        }
        let mut key = CountKey {
            probe_id,
            id: 0,
            comm: [0; COMM_LEN],
        };
        match cfg.count_by {
            by::PID => key.id = tgid,
            by::TID => key.id = tid,
            _ => current_comm(&mut key.comm),
        }
        add_to(&COUNTS, &key, lost::COUNTS_FULL);
    }

    /// `map[key] += 1` on a per-CPU hash; a full table is counted, never ignored.
    #[inline(always)]
    fn add_to<K>(map: &PerCpuHashMap<K, u64>, key: &K, when_full: u32) {
        if let Some(slot) = map.get_ptr_mut(key) {
            // SAFETY: this CPU's value of the entry; preemption is off.
            unsafe { *slot += 1 };
            return;
        }
        if map.insert(key, 1u64, BPF_NOEXIST as u64).is_ok() {
            return;
        }
        // Another CPU created the entry between our lookup and insert: retry once.
        match map.get_ptr_mut(key) {
            // SAFETY: as above.
            Some(slot) => unsafe { *slot += 1 },
            None => count_lost(when_full),
        }
    }

    #[inline(always)]
    fn hist_add(probe_id: u32, which: usize, value: u64) {
        let index = probe_id * HISTS_PER_PROBE as u32 + which as u32;
        let Some(hist) = HISTS.get_ptr_mut(index) else {
            return;
        };
        // SAFETY: this CPU's copy of the histogram; preemption is off.
        let hist = unsafe { &mut *hist };
        if let Some(bucket) = hist.get_mut(log2_bucket(value)) {
            *bucket += 1;
        }
        hist[HIST_COUNT] += 1;
        hist[HIST_SUM] = hist[HIST_SUM].wrapping_add(value);
        // Stored inverted so the zero a fresh slot starts with means "no minimum yet".
        if !value > hist[HIST_MIN] {
            hist[HIST_MIN] = !value;
        }
        if value > hist[HIST_MAX] {
            hist[HIST_MAX] = value;
        }
    }

    /// 0 for 0, else 1 + floor(log2(value)): bucket b holds [2^(b-1), 2^b).
    #[inline(always)]
    fn log2_bucket(value: u64) -> usize {
        if value == 0 {
            return 0;
        }
        let (mut v, mut bits) = (value, 1usize);
        for shift in [32u32, 16, 8, 4, 2, 1] {
            if v >> shift != 0 {
                v >>= shift;
                bits += shift as usize;
            }
        }
        if bits > HIST_BUCKETS - 1 {
            HIST_BUCKETS - 1
        } else {
            bits
        }
    }

    #[inline(always)]
    fn push_frame(tid: u32, args: Args<'_>, wanted: bool, stack_id: i32) {
        let stack = match CALLS.get_ptr_mut(tid) {
            Some(stack) => stack,
            None => {
                let Some(empty) = EMPTY_CALL_STACK.get_ptr(0) else {
                    return;
                };
                // SAFETY: a per-CPU value that is never written, so it stays zeroed.
                if CALLS.insert(tid, unsafe { &*empty }, 0).is_err() {
                    return;
                }
                let Some(stack) = CALLS.get_ptr_mut(tid) else {
                    return;
                };
                stack
            }
        };
        // SAFETY: this thread's own entry; see `hello_uretprobe`.
        let stack = unsafe { &mut *stack };
        let depth = stack.depth as usize;
        stack.depth += 1;
        if let Some(frame) = stack.frames.get_mut(depth) {
            frame.timestamp_ns = unsafe { bpf_ktime_get_ns() };
            if has(flags::EMIT_EVENTS) {
                args.write_to(&mut frame.args);
            }
            frame.wanted = wanted as u32;
            frame.stack_id = stack_id;
        }
        // Deeper than MAX_DEPTH (frames has MAX_DEPTH slots): depth still counts, so
        // returns keep popping the right frames.
    }

    /// One call as it will be recorded.
    struct Call<'a> {
        kind: u32,
        tgid: u32,
        tid: u32,
        probe_id: u32,
        args: Args<'a>,
        ret: u64,
        latency_ns: u64,
        /// Entry time when known (paired calls); 0 takes the time now.
        start_ns: u64,
        stack_id: i32,
        flags: u32,
    }

    /// Writes the task's comm straight into `out` (no temporary, no copy).
    #[inline(always)]
    fn current_comm(out: &mut [u8; COMM_LEN]) {
        // SAFETY: the helper writes at most COMM_LEN bytes into the buffer it is given.
        unsafe { generated::bpf_get_current_comm(out.as_mut_ptr().cast(), COMM_LEN as u32) };
    }

    /// Fills every field of a reserved record from `call`.
    #[inline(always)]
    fn fill(event: &mut CallEvent, call: &Call<'_>, extra_flags: u32) {
        event.timestamp_ns = if call.start_ns != 0 {
            call.start_ns
        } else {
            // SAFETY: a helper without arguments.
            unsafe { bpf_ktime_get_ns() }
        };
        call.args.write_to(&mut event.args);
        event.ret = call.ret;
        event.latency_ns = call.latency_ns;
        event.tgid = call.tgid;
        event.tid = call.tid;
        event.probe_id = call.probe_id;
        event.kind = call.kind;
        event.flags = call.flags | extra_flags;
        event.stack_id = call.stack_id;
        current_comm(&mut event.comm);
    }

    /// Reserves, fills and submits one record (with string arguments when configured).
    #[inline(always)]
    fn emit(call: &Call<'_>) {
        let cfg = config();
        if cfg.str_arg_count == 0 {
            let Some(mut entry) = EVENTS.reserve::<CallEvent>(0) else {
                count_lost(lost::RINGBUF_FULL);
                return;
            };
            // SAFETY: `reserve` handed out exclusive memory of the right size and
            // alignment; `fill` writes every field before submit.
            fill(unsafe { &mut *entry.as_mut_ptr() }, call, 0);
            entry.submit(wakeup_flags());
            return;
        }
        let Some(mut entry) = EVENTS.reserve::<CallEventWithStrings>(0) else {
            count_lost(lost::RINGBUF_FULL);
            return;
        };
        // SAFETY: as above; every string buffer is written (or emptied) below.
        let record = unsafe { &mut *entry.as_mut_ptr() };
        let mut truncated = 0;
        for i in 0..MAX_STR_ARGS {
            let buf = &mut record.strings[i];
            buf[0] = 0;
            if i as u32 >= cfg.str_arg_count {
                continue;
            }
            let ptr = call.args.get(cfg.str_args[i] as usize);
            // SAFETY: reads user memory through the fault-tolerant helper, into a buffer
            // of exactly STR_CAP bytes.
            let len = unsafe {
                bpf_probe_read_user_str(buf.as_mut_ptr().cast(), STR_CAP as u32, ptr as *const _)
            };
            if len < 0 {
                buf[0] = 0;
            } else if len as usize == STR_CAP {
                // The helper stopped at the cap; the string went on if its next byte does.
                let next = unsafe { bpf_probe_read_user((ptr + STR_CAP as u64 - 1) as *const u8) };
                if next.unwrap_or(0) != 0 {
                    truncated |= EVENT_STR_TRUNCATED << i;
                }
            }
        }
        fill(&mut record.event, call, truncated);
        entry.submit(wakeup_flags());
    }

    /// Wake the reader only once a batch is pending; it also drains on a timer.
    #[inline(always)]
    fn wakeup_flags() -> u64 {
        if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES {
            BPF_RB_FORCE_WAKEUP as u64
        } else {
            BPF_RB_NO_WAKEUP as u64
        }
    }

    #[inline(always)]
    fn count_lost(slot: u32) {
        if let Some(n) = LOST.get_ptr_mut(slot) {
            // SAFETY: a per-CPU slot; preemption is off.
            unsafe { *n += 1 };
        }
    }

    /// The cost floor for benchmarks: a probe whose program does nothing.
    #[uprobe]
    pub fn noop_uprobe(_ctx: ProbeContext) -> u32 {
        0
    }

    /// The cost floor of a return probe.
    #[uretprobe]
    pub fn noop_uretprobe(_ctx: RetProbeContext) -> u32 {
        0
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    /// GPL-compatible: `bpf_probe_read_user*` and `bpf_get_stackid` are GPL-only helpers.
    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// On the host this binary is an empty stub, so workspace-wide `cargo check` works.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
