//! Kernel half of `ebpf-tool uprobe`. `hello_uprobe` runs on function entry and
//! `hello_uretprobe` on return. What they do is chosen by `CONFIG`, a read-only global the
//! loader fills before load: the verifier sees its fields as constants and drops the
//! branches a run does not use, so a plain trace pays for none of the other modes.
//!
//! - plain: one record per call into `EVENTS` at entry;
//! - `--ret`/`--latency`: entry saves the arguments and a timestamp on the thread's call
//!   stack (its slot in `CALL_SLOTS`, else `CALLS`), return pops it and writes one record
//!   with arguments, return value and latency;
//! - `--count`, `--hist`, `--latency` histograms and `--stacks` aggregate in per-CPU maps
//!   without any record, so they cost no ring-buffer traffic.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline assembly for the two atomic instructions Rust's BPF target does not offer.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod programs {
    use core::ptr::{addr_of_mut, read_volatile};

    use aya_ebpf::{
        EbpfContext,
        bindings::{BPF_F_USER_STACK, BPF_NOEXIST, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
        helpers::{
            bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
            bpf_probe_read_user,
            generated::{
                self, bpf_get_attach_cookie, bpf_get_current_task_btf, bpf_probe_read_user_str,
            },
        },
        macros::{map, uprobe, uretprobe},
        maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
        programs::{ProbeContext, RetProbeContext, tracing::StackIdContext as _},
    };
    use ebpf_tool_common::{
        CALL_SLOT_COUNT, COMM_LEN, CallStack, Config, CountKey, EVENT_NO_ENTRY,
        EVENT_STR_TRUNCATED, EVENT_STR_UNREADABLE, EVENTS_RING_BYTES, EventHead, Frame,
        HIST_BUCKETS, HIST_COUNT, HIST_LATENCY, HIST_MAX, HIST_MIN, HIST_SLOTS, HIST_SUM,
        HISTS_PER_PROBE, KIND_CALL, KIND_ENTRY, MAX_ARGS, MAX_DEPTH, MAX_STR_ARGS, STR_CAP,
        StackKey, args_offset, by, flags, lost, op, record_size, strings_offset,
    };

    /// This run's settings; the loader overwrites the whole struct before load.
    #[unsafe(no_mangle)]
    static CONFIG: Config = Config::DEFAULT;

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

    /// Records written on each CPU since it last woke the reader.
    #[map]
    static PENDING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

    /// What could not be recorded, by cause (`lost::*`), per CPU so counting never contends.
    #[map]
    static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::SLOTS, 0);

    /// Call stacks of threads inside probed calls, at `tid & call_slot_mask`, each held by
    /// one thread at a time (`CallStack::owner`) and given back when its depth is 0.
    #[map]
    static CALL_SLOTS: Array<CallStack> = Array::with_max_entries(CALL_SLOT_COUNT, 0);

    /// Call stacks of threads whose slot another thread holds. LRU, so threads that die
    /// mid-call cannot fill it.
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
        unsafe { &*read_volatile(&&raw const CONFIG) }
    }

    #[inline(always)]
    fn has(flag: u32) -> bool {
        config().flags & flag != 0
    }

    /// `bpf_ktime_get_ns()` when this run shows time, else 0 without reading the clock.
    #[inline(always)]
    fn timestamp() -> u64 {
        if has(flags::TIMESTAMPS) {
            // SAFETY: a helper without arguments.
            unsafe { bpf_ktime_get_ns() }
        } else {
            0
        }
    }

    /// The running task. Under `TASK_FIELDS` its ids and comm are plain loads through its
    /// BTF pointer at offsets the loader read from the kernel's BTF (the verifier checks
    /// each against the type); otherwise each costs a helper call.
    #[derive(Clone, Copy)]
    struct Task(*const u8);

    impl Task {
        /// For runs that look at no task field: costs nothing.
        const UNUSED: Task = Task(core::ptr::null());

        #[inline(always)]
        fn current() -> Task {
            if has(flags::TASK_FIELDS) {
                // SAFETY: a helper without arguments; it returns a trusted, non-null
                // pointer to the current task.
                Task(unsafe { bpf_get_current_task_btf() } as *const u8)
            } else {
                Task::UNUSED
            }
        }

        /// (tgid, tid): what users call pid and tid.
        #[inline(always)]
        fn ids(self) -> (u32, u32) {
            let cfg = config();
            if cfg.flags & flags::TASK_FIELDS != 0 {
                // SAFETY: `self.0` is the current task (TASK_FIELDS); the offsets are those
                // of its `tgid` and `pid` fields, and the verifier checks them against BTF.
                unsafe {
                    (
                        read_volatile(self.0.add(cfg.task_tgid_off as usize).cast::<u32>()),
                        read_volatile(self.0.add(cfg.task_pid_off as usize).cast::<u32>()),
                    )
                }
            } else {
                let pid_tgid = bpf_get_current_pid_tgid();
                ((pid_tgid >> 32) as u32, pid_tgid as u32)
            }
        }

        /// Writes the task's comm into `out` (8-byte aligned, `COMM_LEN` bytes).
        #[inline(always)]
        fn comm_into(self, out: *mut [u8; COMM_LEN]) {
            let cfg = config();
            if cfg.flags & flags::TASK_FIELDS != 0 {
                // SAFETY: as in `ids`; the loader sets TASK_FIELDS only for an 8-aligned
                // `comm`, and `out` is 8-aligned in every record and key it is used for.
                unsafe {
                    let from = self.0.add(cfg.task_comm_off as usize).cast::<u64>();
                    let to = out.cast::<u64>();
                    *to = read_volatile(from);
                    *to.add(1) = read_volatile(from.add(1));
                }
            } else {
                // SAFETY: the helper writes at most COMM_LEN bytes into `out`.
                unsafe { generated::bpf_get_current_comm(out.cast(), COMM_LEN as u32) };
            }
        }
    }

    /// The task filters, which hold alike at entry and at return.
    #[inline(always)]
    fn task_wanted(task: Task, tgid: u32, tid: u32) -> bool {
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
            let mut comm = [0u64; COMM_LEN / 8];
            task.comm_into(comm.as_mut_ptr().cast());
            // SAFETY: the same 16 bytes, viewed as the byte array they hold.
            if unsafe { *comm.as_ptr().cast::<[u8; COMM_LEN]>() } != cfg.comm {
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
        // Narrowed to the declared type: an `int` of -1 is 0x00000000ffffffff in its
        // register, and upper bits may hold anything.
        let bits = cfg.arg_filter_bits;
        let unused = if bits == 0 || bits >= 64 {
            0
        } else {
            64 - bits
        };
        let ord = if cfg.flags & flags::FILTER_ARG_SIGNED != 0 {
            (((value << unused) as i64) >> unused).cmp(&(rhs as i64))
        } else {
            ((value << unused) >> unused).cmp(&rhs)
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

        /// Writes the first `Config::record_args` of them to `out`, one by one.
        ///
        /// # Safety
        /// `out` must have room for `record_args` values.
        #[inline(always)]
        unsafe fn write_to(self, out: *mut u64) {
            let count = config().record_args as usize;
            for n in 0..MAX_ARGS {
                if n < count {
                    // SAFETY: within the room the caller vouches for.
                    unsafe { *out.add(n) = self.get(n) };
                }
            }
        }
    }

    #[uprobe]
    pub fn hello_uprobe(ctx: ProbeContext) -> u32 {
        // Each step runs only when this run's CONFIG needs it; the verifier prunes the
        // rest, so `--count` on one function costs little more than the floor. Arguments
        // are read from the registers where they are used: no array, no memset.
        let task = if needs_task() {
            Task::current()
        } else {
            Task::UNUSED
        };
        let (tgid, tid) = if needs_task_ids() { task.ids() } else { (0, 0) };
        if !task_wanted(task, tgid, tid) {
            return 0;
        }
        let probe_id = cookie(&ctx);
        let args = Args::Regs(&ctx);
        let wanted = arg_wanted(args);
        if wanted {
            aggregate_entry(&ctx, task, probe_id, tgid, tid, args);
        }
        if has(flags::PAIR_RETURNS) {
            push_frame(tid, args, wanted, stack_pointer(ctx.regs));
            return 0;
        }
        if wanted && has(flags::EMIT_EVENTS) {
            emit(
                task,
                &Call {
                    kind: KIND_ENTRY,
                    tgid,
                    tid,
                    probe_id,
                    args,
                    ret: 0,
                    latency_ns: 0,
                    timestamp_ns: timestamp(),
                    flags: 0,
                },
            );
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

    /// Whether anything in this run looks at the task (its ids or its comm).
    #[inline(always)]
    fn needs_task() -> bool {
        needs_task_ids() || has(flags::FILTER_COMM)
    }

    #[uretprobe]
    pub fn hello_uretprobe(ctx: RetProbeContext) -> u32 {
        let task = Task::current();
        let (tgid, tid) = task.ids();
        if !task_wanted(task, tgid, tid) {
            return 0;
        }
        let now = timestamp();
        let probe_id = cookie(&ctx);
        let Some((stack, in_slot)) = stack_to_pop(tid) else {
            return unpaired(task, tgid, tid, probe_id, ctx.ret(), now);
        };
        // SAFETY: this thread's own stack (its slot, or its CALLS entry); only this thread
        // pushes and pops it, and uprobe handlers of one thread never run concurrently.
        let stack = unsafe { &mut *stack };
        let entry_sp = stack_pointer(ctx.regs).wrapping_sub(RETURN_POPS);
        drop_abandoned_frames(stack, entry_sp, false);
        if stack.depth == 0 {
            if in_slot {
                give_back(stack);
            }
            return unpaired(task, tgid, tid, probe_id, ctx.ret(), now);
        }
        match stack.frames.get(stack.depth as usize - 1) {
            // An outer call's frame: this return's entry was not recorded. Leave the frame
            // for its own return rather than pair it with the wrong one.
            Some(frame) if frame.stack_pointer > entry_sp => {
                unpaired(task, tgid, tid, probe_id, ctx.ret(), now);
            }
            Some(frame) => {
                stack.depth -= 1;
                if frame.wanted != 0 {
                    complete(task, tgid, tid, probe_id, ctx.ret(), now, frame);
                }
            }
            None => {
                stack.depth -= 1;
                unpaired(task, tgid, tid, probe_id, ctx.ret(), now); // beyond MAX_DEPTH
            }
        }
        // Only now: once given back, another thread may overwrite the frame read above.
        if in_slot && stack.depth == 0 {
            give_back(stack);
        }
        0
    }

    /// Bytes a return takes off the stack: x86-64's `ret` pops the return address,
    /// AArch64's leaves the stack as the call found it.
    const RETURN_POPS: u64 = if cfg!(bpf_target_arch = "x86_64") {
        8
    } else {
        0
    };

    /// The stack pointer in the probed task's saved registers (0 where unknown, which
    /// makes every frame match as before).
    #[inline(always)]
    fn stack_pointer(regs: *const aya_ebpf::bindings::pt_regs) -> u64 {
        // SAFETY: the kernel hands the program the probed task's saved registers.
        let regs = unsafe { &*regs };
        #[cfg(bpf_target_arch = "x86_64")]
        {
            regs.rsp
        }
        #[cfg(bpf_target_arch = "aarch64")]
        {
            regs.sp
        }
        #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
        {
            let _ = regs;
            0
        }
    }

    /// Pops the frames of calls that left without returning (longjmp, an exception
    /// unwinding through them), which no return will ever pop: left in place they would
    /// fill the stack. A live frame always lies higher in the stack than the calls made
    /// inside it, so at an entry with stack pointer `sp` every frame at or below `sp` is
    /// dead (`inclusive`), and at a return every frame below its entry's.
    #[inline(always)]
    fn drop_abandoned_frames(stack: &mut CallStack, sp: u64, inclusive: bool) {
        for _ in 0..MAX_DEPTH {
            let top = (stack.depth as usize).wrapping_sub(1);
            match stack.frames.get(top) {
                Some(frame)
                    if frame.stack_pointer < sp || (inclusive && frame.stack_pointer == sp) =>
                {
                    stack.depth -= 1
                }
                _ => return,
            }
        }
    }

    /// A paired call's return: its latency into the histogram, its record into the ring.
    #[inline(always)]
    fn complete(task: Task, tgid: u32, tid: u32, probe_id: u32, ret: u64, now: u64, frame: &Frame) {
        let latency = now.saturating_sub(frame.timestamp_ns);
        if has(flags::HIST_LATENCY) {
            hist_add(probe_id, HIST_LATENCY, latency);
        }
        if has(flags::EMIT_EVENTS) {
            emit(
                task,
                &Call {
                    kind: KIND_CALL,
                    tgid,
                    tid,
                    probe_id,
                    args: Args::Saved(&frame.args),
                    ret,
                    latency_ns: latency,
                    timestamp_ns: frame.timestamp_ns,
                    flags: 0,
                },
            );
        }
    }

    /// A return whose entry was not seen (attached mid-call, or nested too deep).
    #[inline(always)]
    fn unpaired(task: Task, tgid: u32, tid: u32, probe_id: u32, ret: u64, now: u64) -> u32 {
        count_lost(lost::UNPAIRED);
        // Without the entry the argument filter cannot be applied: report only when there
        // is none, flagged so nobody mistakes the zero arguments for real ones.
        if !has(flags::FILTER_ARG) && has(flags::EMIT_EVENTS) {
            emit(
                task,
                &Call {
                    kind: KIND_CALL,
                    tgid,
                    tid,
                    probe_id,
                    args: Args::Unknown,
                    ret,
                    latency_ns: 0,
                    timestamp_ns: now,
                    flags: EVENT_NO_ENTRY,
                },
            );
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

    /// The in-kernel aggregations done at entry.
    #[inline(always)]
    fn aggregate_entry(
        ctx: &ProbeContext,
        task: Task,
        probe_id: u32,
        tgid: u32,
        tid: u32,
        args: Args<'_>,
    ) {
        let cfg = config();
        if cfg.flags & flags::COUNT != 0 {
            count_call(task, probe_id, tgid, tid);
        }
        if cfg.flags & flags::HIST_ARG != 0 {
            hist_add(
                probe_id,
                ebpf_tool_common::HIST_ARG,
                args.get(cfg.hist_arg_index as usize),
            );
        }
        if cfg.flags & flags::STACKS == 0 {
            return;
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
                task.comm_into(&mut key.comm);
                add_to(&STACK_COUNTS, &key, lost::STACKS_FAILED);
            }
            Err(_) => count_lost(lost::STACKS_FAILED),
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
    fn count_call(task: Task, probe_id: u32, tgid: u32, tid: u32) {
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
            _ => task.comm_into(&mut key.comm),
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

    /// Who holds a slot (0: nobody). Read plainly: only the holder itself acts on
    /// seeing its own tid, and others only try to claim.
    #[inline(always)]
    fn holder(stack: *mut CallStack) -> u64 {
        // SAFETY: a field of a map value, which lives as long as the program.
        unsafe { read_volatile(addr_of_mut!((*stack).owner)) }
    }

    /// `*word = new` if `*word == old`, atomically; returns what `*word` was. Rust's BPF
    /// target has no read-modify-write atomics, the instruction set does (BPF_CMPXCHG).
    ///
    /// # Safety
    /// `word` must be valid for reads and writes.
    #[inline(always)]
    unsafe fn compare_exchange(word: *mut u64, old: u64, new: u64) -> u64 {
        let previous: u64;
        // SAFETY: the caller vouches for `word`; the instruction touches nothing else.
        unsafe {
            core::arch::asm!(
                "r0 = cmpxchg_64({word} + 0, r0, {new})",
                word = in(reg) word,
                new = in(reg) new,
                inout("r0") old => previous,
                options(nostack),
            )
        };
        previous
    }

    /// `*word = new`, atomically and fully ordered (BPF_XCHG).
    ///
    /// # Safety
    /// `word` must be valid for reads and writes.
    #[inline(always)]
    unsafe fn exchange(word: *mut u64, new: u64) {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                "{value} = xchg_64({word} + 0, {value})",
                word = in(reg) word,
                value = inout(reg) new => _,
                options(nostack),
            )
        };
    }

    /// Where this thread pushes a call: its slot if it holds it or can claim it (free),
    /// else its `CALLS` entry, created empty when missing. `true` for a slot.
    #[inline(always)]
    fn stack_to_push(tid: u32) -> Option<(*mut CallStack, bool)> {
        if let Some(slot) = CALL_SLOTS.get_ptr_mut(tid & config().call_slot_mask) {
            let held_by = holder(slot);
            if held_by == tid as u64 {
                return Some((slot, true));
            }
            // SAFETY: the slot's owner word, in a live map value.
            if held_by == 0
                && unsafe { compare_exchange(addr_of_mut!((*slot).owner), 0, tid as u64) } == 0
            {
                // SAFETY: claimed just now: this thread alone writes it until it gives it
                // back, which it does only at depth 0.
                unsafe { (*slot).depth = 0 };
                return Some((slot, true));
            }
        }
        if let Some(stack) = CALLS.get_ptr_mut(tid) {
            return Some((stack, false));
        }
        let empty = EMPTY_CALL_STACK.get_ptr(0)?;
        // SAFETY: a per-CPU value that is never written, so it stays zeroed.
        CALLS.insert(tid, unsafe { &*empty }, 0).ok()?;
        CALLS.get_ptr_mut(tid).map(|stack| (stack, false))
    }

    /// Where this thread's innermost call was pushed. A thread's frames in its slot are
    /// always newer than those in `CALLS` (it only uses `CALLS` while it does not hold
    /// the slot), so popping the slot first keeps the order.
    #[inline(always)]
    fn stack_to_pop(tid: u32) -> Option<(*mut CallStack, bool)> {
        if let Some(slot) = CALL_SLOTS.get_ptr_mut(tid & config().call_slot_mask) {
            if holder(slot) == tid as u64 {
                return Some((slot, true));
            }
        }
        CALLS.get_ptr_mut(tid).map(|stack| (stack, false))
    }

    /// Frees a slot whose depth is back to 0 for any thread to claim.
    #[inline(always)]
    fn give_back(stack: *mut CallStack) {
        // An exchange, not a store: it orders this thread's last writes to the slot before
        // the release, on any architecture.
        // SAFETY: the slot's owner word, in a live map value.
        unsafe { exchange(addr_of_mut!((*stack).owner), 0) };
    }

    #[inline(always)]
    fn push_frame(tid: u32, args: Args<'_>, wanted: bool, stack_pointer: u64) {
        let Some((stack, _)) = stack_to_push(tid) else {
            return; // its return will be counted as unpaired
        };
        // SAFETY: this thread's own stack; see `hello_uretprobe`.
        let stack = unsafe { &mut *stack };
        drop_abandoned_frames(stack, stack_pointer, true);
        let depth = stack.depth as usize;
        stack.depth += 1;
        if let Some(frame) = stack.frames.get_mut(depth) {
            frame.timestamp_ns = timestamp();
            frame.stack_pointer = stack_pointer;
            if has(flags::EMIT_EVENTS) {
                // SAFETY: `frame.args` has MAX_ARGS slots, at least `record_args`.
                unsafe { args.write_to(frame.args.as_mut_ptr()) };
            }
            frame.wanted = wanted as u32;
        }
        // Deeper than MAX_DEPTH (frames has MAX_DEPTH slots): depth still counts, so
        // returns keep popping the right frames.
    }

    /// One call as it will be recorded.
    struct Call<'a> {
        kind: u16,
        tgid: u32,
        tid: u32,
        probe_id: u32,
        args: Args<'a>,
        ret: u64,
        latency_ns: u64,
        timestamp_ns: u64,
        flags: u16,
    }

    /// Reserves, fills and submits one record: the head, then what this run shows (see
    /// `EventHead`). Its size is a constant of the run, as the verifier requires.
    #[inline(always)]
    fn emit(task: Task, call: &Call<'_>) {
        let cfg = config();
        let size = record_size(call.kind, cfg.record_args, cfg.str_arg_count);
        let Some(mut record) = EVENTS.reserve_bytes(size, 0) else {
            count_lost(lost::RINGBUF_FULL);
            return;
        };
        let base = record.as_mut_ptr();
        let mut flags = call.flags;
        // SAFETY: `reserve_bytes` handed out `size` exclusive bytes, 8-aligned; every
        // write below is inside the layout `record_size` measured for this run.
        unsafe {
            let head = base.cast::<EventHead>();
            (*head).timestamp_ns = call.timestamp_ns;
            (*head).tgid = call.tgid;
            (*head).tid = call.tid;
            (*head).probe_id = call.probe_id;
            (*head).kind = call.kind;
            task.comm_into(addr_of_mut!((*head).comm));
            if call.kind == KIND_CALL {
                let words = base.add(args_offset(KIND_ENTRY)).cast::<u64>();
                *words = call.ret;
                *words.add(1) = call.latency_ns;
            }
            call.args
                .write_to(base.add(args_offset(call.kind)).cast::<u64>());
            let strings = base.add(strings_offset(call.kind, cfg.record_args));
            for i in 0..MAX_STR_ARGS {
                if (i as u32) < cfg.str_arg_count {
                    let pointer = call.args.get(cfg.str_args[i] as usize);
                    match read_string(strings.add(i * STR_CAP), pointer) {
                        StringRead::Whole => {}
                        StringRead::Truncated => flags |= EVENT_STR_TRUNCATED << i,
                        StringRead::Unreadable => {
                            flags |= EVENT_STR_UNREADABLE << i;
                            count_lost(lost::UNREADABLE);
                        }
                    }
                }
            }
            (*head).flags = flags;
        }
        record.submit(wakeup_flags());
    }

    /// How reading a string argument went.
    enum StringRead {
        Whole,
        /// It went on beyond `STR_CAP - 1` bytes.
        Truncated,
        /// Nothing could be read: a bad pointer, or a page the process has not touched.
        Unreadable,
    }

    /// Copies the NUL-terminated user string at `pointer` into the `STR_CAP` bytes at
    /// `buf` (empty when unreadable).
    ///
    /// # Safety
    /// `buf` must point to `STR_CAP` writable bytes.
    #[inline(always)]
    unsafe fn read_string(buf: *mut u8, pointer: u64) -> StringRead {
        // SAFETY: a fault-tolerant read into exactly STR_CAP bytes.
        let len =
            unsafe { bpf_probe_read_user_str(buf.cast(), STR_CAP as u32, pointer as *const _) };
        if len < 0 {
            // SAFETY: within the caller's buffer.
            unsafe { *buf = 0 };
            return StringRead::Unreadable;
        }
        if len as usize != STR_CAP {
            return StringRead::Whole;
        }
        // The helper stopped at the cap; the string went on if its next byte does.
        // SAFETY: a fault-tolerant read of one user byte.
        let next = unsafe { bpf_probe_read_user((pointer + STR_CAP as u64 - 1) as *const u8) };
        if next.unwrap_or(0) != 0 {
            StringRead::Truncated
        } else {
            StringRead::Whole
        }
    }

    /// Wake the reader once this CPU has written a batch (`Config::wakeup_every`); it also
    /// drains on a timer. A per-CPU count costs less than asking the ring how full it is.
    #[inline(always)]
    fn wakeup_flags() -> u64 {
        if let Some(pending) = PENDING.get_ptr_mut(0) {
            // SAFETY: this CPU's counter; preemption is off while the program runs.
            unsafe {
                *pending += 1;
                if *pending >= config().wakeup_every {
                    *pending = 0;
                    return BPF_RB_FORCE_WAKEUP as u64;
                }
            }
        }
        BPF_RB_NO_WAKEUP as u64
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
