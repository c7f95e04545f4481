//! `murmur bench` through the real binary, small: the host-side scenarios run on the real
//! runtime with the `configurable` fixture loaded from its `.so` (found next to the binary,
//! where the build leaves it), and print consistent figures. No figure is compared with a
//! target here: speed is the benchmarks' business (docs/performance.md), not the tests'.

use murmur_e2e::*;

/// The number after `label` on the line that starts with `line_start`.
fn figure(out: &str, line_start: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no line starting with {line_start:?} in:\n{out}"));
    let rest = line
        .split_once(label)
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
        .1;
    let number: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn the_host_scenarios_run_on_the_real_runtime_and_print_their_figures() {
    let dir = setup("bench-small");
    let out = dir.murmur([
        "bench",
        "turns",
        "critical-path",
        "sessions",
        "boundary",
        "--turns",
        "110",
        "--rounds",
        "1",
        "--latency-turns",
        "6",
        "--sessions",
        "50",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let s = &out.stdout;
    for heading in [
        "== turns ==",
        "== critical-path ==",
        "== sessions ==",
        "== boundary ==",
    ] {
        assert!(s.contains(heading), "{heading} missing:\n{s}");
    }
    // turns: both configurations ran every turn; the four analyzers ran and their notes
    // reached model inputs.
    let four = s
        .lines()
        .find(|l| l.starts_with("1      four"))
        .unwrap_or_else(|| panic!("no round line for four analyzers:\n{s}"));
    let cols: Vec<&str> = four.split_whitespace().collect();
    let runs: u64 = cols[6].parse().expect("runs column");
    let delivered: u64 = cols[7].parse().expect("delivered column");
    assert!(
        runs > 0 && runs <= 440,
        "four analyzers × 110 turns at most: {four}"
    );
    assert!(delivered > 0, "no note was delivered: {four}");
    assert!(figure(s, "cpu per turn with four analyzers", "analyzers") > 0.0);
    assert!(s.contains("history growth, four analyzers"), "{s}");
    // critical path: the analyzers ran while replies streamed.
    assert!(figure(s, "analyzer runs", "runs") > 0.0, "{s}");
    // sessions: memory was measured for the 50 sessions.
    assert!(s.contains("50 sessions with one turn each"), "{s}");
    assert!(figure(s, "resident memory", "after:") >= 0.0);
    // boundary: the four call kinds, a run, a load and a drain.
    for row in [
        "early return, 1-message context",
        "one note, 20-message context",
        "whole run, one note, 20-message context",
        "loading the plugin",
        "draining 100 queued notes",
    ] {
        assert!(s.contains(row), "{row} missing:\n{s}");
    }
    assert!(s.contains("reproduce        murmur bench boundary"), "{s}");
}

#[test]
fn a_missing_fixture_plugin_is_named_with_the_way_to_build_it() {
    let dir = setup("bench-missing");
    let out = dir.murmur(["bench", "boundary", "--plugins", "no-such-folder"]);
    assert_eq!(out.code, Some(2), "{}", out.dump());
    let e = &out.stderr;
    assert!(
        e.contains("libmurmur_testing_configurable.so is not in no-such-folder")
            && e.contains("cargo build --release -p murmur-testing-configurable"),
        "{e}"
    );
    let out = dir.murmur(["bench", "turns", "--turns", "5"]);
    assert_eq!(out.code, Some(2), "{}", out.dump());
    assert!(
        out.stderr.contains("--turns must be at least 110"),
        "{}",
        out.stderr
    );
}
