//! A plan and its targets as the kernel programs' settings (`Config`): which steps run on
//! each hit, the task filters, and the `ProbeSpec` each probe reads: one in `Config`
//! when every function takes its arguments the same way (the verifier then sees
//! constants), else one per probe (`SPEC_PER_PROBE`: a Go program's assembly next to its
//! Go functions). Pure, so each rule is unit-tested here; the loader later adds what
//! only the running machine knows (task field offsets, wake-up batch, call slots).

use std::num::NonZeroU32;

use ebpf_tool_common::{Config, ProbeSpec, STACK_CHUNK, ValueSpec, by, flags, pair_by};

use super::{Plan, Targets};
use crate::{
    cli::{GroupBy, Unwind},
    symbols::CallConv,
    values::{
        ValueError,
        abi::{Abi, GoRegisters, GoStack, UsdtSite, WithNames},
        probe_spec,
        request::ValueType,
    },
};

/// What the kernel programs are loaded with.
#[derive(Debug, Clone)]
pub struct KernelSettings {
    pub config: Config,
    /// Under `SPEC_PER_PROBE`, `specs[probe_id]`; else empty.
    pub specs: Vec<ProbeSpec>,
}

/// A value that cannot be read in one of the functions.
#[derive(Debug, thiserror::Error)]
#[error("{function}: {source}")]
pub struct SpecError {
    function: String,
    #[source]
    source: ValueError,
}

/// The settings for `plan` on `targets`; `native` is the C calling convention of the
/// machine, `tool_pid` ebpf-tool's own pid, never traced.
pub fn kernel_config(
    plan: &Plan,
    targets: &Targets,
    native: &dyn Abi,
    tool_pid: u32,
) -> Result<KernelSettings, SpecError> {
    // Each function's convention; USDT sites with their own argument locations, and
    // values named from the source with what each function's debug info says.
    let spec_for = |call: CallConv,
                    site: Option<&[Option<ValueSpec>]>,
                    named: Option<&[(String, ValueSpec)]>|
     -> Result<ProbeSpec, ValueError> {
        let usdt;
        let with_names;
        let abi: &dyn Abi = match (call, site) {
            (CallConv::Usdt, Some(args)) => {
                usdt = UsdtSite(args);
                &usdt
            }
            (CallConv::C | CallConv::Usdt, _) => native,
            (CallConv::GoRegisters, _) => &GoRegisters,
            (CallConv::GoStack, _) => &GoStack,
        };
        let abi: &dyn Abi = match named {
            Some(named) => {
                with_names = WithNames { abi, named };
                &with_names
            }
            None => abi,
        };
        let mut spec = probe_spec(abi, &plan.format.layout, &plan.extras)?;
        // Goroutines move between threads and their stacks move; ABI0 code (assembly)
        // does neither while it runs, and keeps no goroutine in R14.
        if call == CallConv::GoRegisters {
            spec.pair_by = pair_by::GOROUTINE;
        }
        Ok(spec)
    };
    let sites: Vec<Vec<Option<ValueSpec>>> = targets
        .usdt_args
        .iter()
        .map(|args| {
            args.iter()
                .map(|a| a.as_ref().ok().map(|a| a.spec))
                .collect()
        })
        .collect();
    let spec_of_function = |index: usize, function: &crate::symbols::FunctionSymbol| {
        spec_for(
            function.call,
            sites.get(index).map(Vec::as_slice),
            targets.named.get(index).map(Vec::as_slice),
        )
        .map_err(|source| usdt_argument_error(targets, index, source, function))
    };
    let mut conventions: Vec<CallConv> = targets.functions.iter().map(|f| f.call).collect();
    conventions.sort_by_key(|c| *c as u8);
    conventions.dedup();
    let mut specs = Vec::new();
    let per_site = !targets.usdt_args.is_empty() || !targets.named.is_empty();
    let spec = match conventions[..] {
        [] => spec_for(CallConv::C, None, None).map_err(|source| SpecError {
            function: plan.function_arg.clone(),
            source,
        })?,
        [_] if !per_site || targets.functions.len() == 1 => {
            spec_of_function(0, &targets.functions[0])?
        }
        _ => {
            for (index, function) in targets.functions.iter().enumerate() {
                specs.push(spec_of_function(index, function)?);
            }
            specs[0]
        }
    };
    let mut config = Config {
        spec,
        // ebpf-tool cannot call into a file it has not mapped: no self-filter needed,
        // which spares the hot path a lookup.
        tool_tgid: if targets.mapped_by_self { tool_pid } else { 0 },
        target_tgid: plan.tasks.pid.map_or(0, NonZeroU32::get),
        target_tid: plan.tasks.tid.unwrap_or(0),
        target_uid: plan.tasks.uid.unwrap_or(u32::MAX),
        flags: 0,
        probes: targets.functions.len().max(1) as u32,
        ..Config::DEFAULT
    };
    let mut set = |flag: u32, on: bool| {
        if on {
            config.flags |= flag;
        }
    };
    set(flags::EMIT_EVENTS, plan.per_event);
    set(flags::PAIR_RETURNS, plan.returns);
    set(flags::HIST_LATENCY | flags::TIMESTAMPS, plan.latency);
    set(flags::COUNT, plan.count);
    set(flags::HIST_VALUE, plan.extras.hist.is_some());
    set(flags::STACKS, plan.stacks.is_some());
    set(flags::CALLER_AT_ENTRY, targets.all_at_entry());
    set(flags::FILTER_VALUE, plan.extras.filter.is_some());
    // JSON carries timestamps; plain text spares the clock.
    set(flags::TIMESTAMPS, plan.per_event && plan.json);
    if let Some(stacks) = &plan.stacks {
        let dwarf = match stacks.unwind {
            Unwind::Dwarf => true,
            Unwind::Fp => false,
            Unwind::Auto => !targets.frame_pointers,
        };
        if dwarf {
            config.flags |= flags::STACKS_DWARF;
            config.stack_chunks = stacks.stack_bytes.div_ceil(STACK_CHUNK as u32);
        }
    }
    if let Some(comm) = plan.tasks.comm {
        config.flags |= flags::FILTER_COMM;
        config.comm = comm;
    }
    config.hists_per_probe =
        (u32::from(plan.latency) + u32::from(plan.extras.hist.is_some())).max(1);
    config.count_by = match &plan.group_by {
        GroupBy::Func => by::FUNC,
        GroupBy::Pid => by::PID,
        GroupBy::Tid => by::TID,
        GroupBy::Comm => by::COMM,
        GroupBy::Value(value) if value.ty == ValueType::Str => by::STRING,
        GroupBy::Value(_) => by::VALUE,
    };
    let histograms = plan.latency || plan.extras.hist.is_some();
    if histograms && plan.group_by != GroupBy::Func {
        config.flags |= flags::GROUP_HISTS;
    }
    if !specs.is_empty() {
        config.flags |= flags::SPEC_PER_PROBE;
    }
    if !plan.per_event {
        // Records are not written: carry no values (the filter and histogram have their
        // own specs).
        for spec in std::iter::once(&mut config.spec).chain(&mut specs) {
            spec.count = 0;
            spec.slots = 0;
        }
    }
    Ok(KernelSettings { config, specs })
}

/// A spec that cannot be built for probe `index`, saying why a USDT argument cannot be
/// read when that is the cause.
fn usdt_argument_error(
    targets: &Targets,
    index: usize,
    source: ValueError,
    function: &crate::symbols::FunctionSymbol,
) -> SpecError {
    let source = match (&source, targets.usdt_args.get(index)) {
        (ValueError::NoSuchArgument { n }, Some(args)) => match args.get(*n) {
            Some(Err(why)) => ValueError::UsdtArgument {
                why: why.to_string(),
            },
            _ => ValueError::UsdtArgumentCount {
                n: *n,
                count: args.len(),
            },
        },
        _ => source,
    };
    SpecError {
        function: function.label(),
        source,
    }
}

/// Limits the kernel programs to the command of `-c`: its cgroup (it and every process it
/// starts), or its pid when there is no cgroup to use.
pub fn scope_to_command(config: &mut Config, scope: crate::launch::Scope) {
    match scope {
        crate::launch::Scope::Cgroup(id) => {
            config.flags |= flags::FILTER_CGROUP;
            config.target_cgroup = id;
        }
        crate::launch::Scope::Process(pid) => config.target_tgid = pid,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use ebpf_tool_common::{op, reg::x86_64};

    use super::*;
    use crate::{
        cli::{Cli, Command},
        symbols::{FunctionSymbol, SymbolSource},
        values::abi::SysV64,
    };

    fn plan(line: &str) -> Plan {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        let (Command::Uprobe(args) | Command::Usdt(args)) = cli.command else {
            panic!("not a tracing command: {line}")
        };
        Plan::from_args(&args).unwrap()
    }

    fn targets(functions: usize, mapped_by_self: bool) -> Targets {
        let function = |i: u64| FunctionSymbol {
            name: format!("f{i}"),
            demangled: None,
            address: 0x1000 + i * 16,
            size: 16,
            file_offset: 0x1000 + i * 16,
            offset_in_function: 0,
            ifunc: false,
            source: SymbolSource::Symtab,
            call: Default::default(),
        };
        Targets {
            binary: "/bin/x".into(),
            functions: (0..functions as u64).map(function).collect(),
            points: Vec::new(),
            return_sites: false,
            labels: (0..functions).map(|i| format!("f{i}")).collect(),
            notes: Vec::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
            mapped_by_self,
            frame_pointers: true,
            usdt_args: Vec::new(),
            semaphores: Vec::new(),
            named: Vec::new(),
        }
    }

    fn config(line: &str) -> Config {
        kernel_config(&plan(line), &targets(1, true), &SysV64, 4242)
            .unwrap()
            .config
    }

    #[test]
    fn a_plain_trace_emits_records_with_its_values_and_no_clock() {
        let c = config("ebpf-tool uprobe x f -a 0,1:str");
        assert_eq!(c.flags & flags::EMIT_EVENTS, flags::EMIT_EVENTS);
        assert_eq!(
            c.flags & (flags::TIMESTAMPS | flags::PAIR_RETURNS | flags::COUNT),
            0
        );
        assert_eq!((c.spec.count, c.spec.slots), (2, 1));
        assert_eq!(c.spec.values[0].base, x86_64::RDI);
        assert_eq!(c.tool_tgid, 4242);
        assert_ne!(c.flags & flags::CALLER_AT_ENTRY, 0);
    }

    #[test]
    fn json_and_latency_read_the_clock() {
        assert_ne!(
            config("ebpf-tool uprobe x f --json").flags & flags::TIMESTAMPS,
            0
        );
        let c = config("ebpf-tool uprobe x f --latency -q");
        assert_ne!(c.flags & flags::HIST_LATENCY, 0);
        assert_ne!(c.flags & flags::PAIR_RETURNS, 0);
        assert_eq!(c.flags & flags::EMIT_EVENTS, 0);
        assert_eq!(c.spec.count, 0, "no records, no values");
    }

    #[test]
    fn aggregates_filters_and_tasks() {
        let c = config(
            "ebpf-tool uprobe x f --count --by tid --filter arg1:i32<0 -p 7 --uid 0 --comm sh",
        );
        assert_eq!(c.count_by, by::TID);
        assert_ne!(c.flags & flags::FILTER_VALUE, 0);
        assert_eq!(
            (
                c.spec.filter.op,
                c.spec.filter.value.size,
                c.spec.filter.value.signed
            ),
            (op::LT, 4, 1)
        );
        assert_eq!((c.target_tgid, c.target_uid), (7, 0));
        assert_eq!(&c.comm[..3], b"sh\0");
        let c = config("ebpf-tool uprobe x f --hist 7");
        assert_ne!(c.flags & flags::HIST_VALUE, 0);
        assert_eq!(
            (
                c.spec.hist.base,
                c.spec.hist.reads,
                c.spec.hist.displacement
            ),
            (x86_64::RSP, 1, 16)
        );
    }

    #[test]
    fn a_file_ebpf_tool_does_not_map_needs_no_self_filter() {
        let c = kernel_config(
            &plan("ebpf-tool uprobe x f"),
            &targets(3, false),
            &SysV64,
            1,
        )
        .unwrap()
        .config;
        assert_eq!((c.tool_tgid, c.probes), (0, 3));
    }

    #[test]
    fn go_functions_read_go_registers_and_pair_by_goroutine() {
        let mut t = targets(1, false);
        t.functions[0].call = CallConv::GoRegisters;
        let k = kernel_config(&plan("ebpf-tool uprobe x f -a 0,1 --ret"), &t, &SysV64, 1).unwrap();
        assert!(k.specs.is_empty(), "one convention, one spec in CONFIG");
        let spec = k.config.spec;
        assert_eq!(
            (spec.values[0].base, spec.values[1].base),
            (x86_64::RAX, x86_64::RBX)
        );
        assert_eq!(
            (spec.ret.base, spec.pair_by),
            (x86_64::RAX, pair_by::GOROUTINE)
        );
    }

    #[test]
    fn mixed_conventions_get_a_spec_per_probe() {
        let mut t = targets(3, false);
        t.functions[1].call = CallConv::GoRegisters;
        t.functions[2].call = CallConv::GoStack;
        let k = kernel_config(&plan("ebpf-tool uprobe x f -a 0"), &t, &SysV64, 1).unwrap();
        assert_ne!(k.config.flags & flags::SPEC_PER_PROBE, 0);
        let bases: Vec<u8> = k.specs.iter().map(|s| s.values[0].base).collect();
        assert_eq!(bases, [x86_64::RDI, x86_64::RAX, x86_64::RSP]);
        assert_eq!(k.specs[2].values[0].displacement, 8);
        // A stack-ABI function has no return register: --ret names it.
        let err = kernel_config(&plan("ebpf-tool uprobe x f --ret"), &t, &SysV64, 1).unwrap_err();
        assert!(err.to_string().starts_with("f2: "), "{err}");
    }
}
