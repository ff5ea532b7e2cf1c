//! Privileged: the argument model end to end, every kind of location against a fixture
//! whose values are known: registers, stack arguments past the sixth, a register by name,
//! a field two pointers deep, and a bad pointer, which gives an error marker and a
//! count, never a wrong value.

#[macro_use]
mod common;

use common::{Tracer, parse_events, run_fixture, target_fixture};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn register_and_stack_arguments_are_exact() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_many",
        "-a",
        "0,5,6,7,%rsi",
    ]);
    let (pid, _) = run_fixture(&fixture, "many", 25);
    let lines = tracer.interrupt().ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(events.len(), 25, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        let i = i as i64;
        assert_eq!(event.number("arg0"), i);
        assert_eq!(event.number("arg5"), i + 5);
        assert_eq!(event.number("arg6"), i + 6, "{event:?}");
        assert_eq!(event.number("arg7"), i + 7, "{event:?}");
        assert_eq!(event.number("%rsi"), i + 1);
    }
}

#[test]
fn a_field_two_pointers_deep_and_a_bad_pointer() {
    require_root!();
    let fixture = target_fixture();
    // outer->in->value: the pointer at arg0 + 8, then the u32 at 4 past it.
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_deep",
        "-a",
        "+4(+8(arg0)):u32,+0(arg0)",
    ]);
    let (pid, _) = run_fixture(&fixture, "deep", 30);
    let finished = tracer.interrupt();
    let stderr = finished.stderr.clone();
    let lines = finished.ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(events.len(), 30, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.number("+0(arg0)"), i as i64, "the tag, one read deep");
        let value = event.field("+4(+8(arg0))").unwrap();
        if i % 3 == 2 {
            assert_eq!(value, "(unreadable)", "{event:?}");
        } else {
            assert_eq!(value, (1000 + i).to_string(), "{event:?}");
        }
    }
    assert!(stderr.contains("10 values unreadable"), "{stderr}");
}
