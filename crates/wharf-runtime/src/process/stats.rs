//! CPU time and memory of an instance's whole process group, read from `/proc`.

/// Clock ticks per second of `/proc/<pid>/stat` times; 100 on every Linux platform we run on.
const TICKS: f64 = 100.0;

#[derive(Default)]
pub(crate) struct Usage {
    pub(crate) rss_bytes: u64,
    pub(crate) cpu_seconds: f64,
}

/// The process's start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) and its
/// process group: together they tell a process apart from a later one that reused its pid.
pub(crate) fn identity(pid: u32) -> Option<(u64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(19)?.parse().ok()?, fields.get(2)?.parse().ok()?))
}

/// Usage per process group, for all of `pgids` in one pass over `/proc` (the scan costs the
/// same for one group as for many).
pub(crate) fn groups_usage(pgids: &[u32]) -> std::collections::HashMap<u32, Usage> {
    let mut out = std::collections::HashMap::new();
    if pgids.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): pgrp is field 5, utime 14, stime 15, rss (pages) 24.
        let Some(pgid) = fields
            .get(2)
            .and_then(|f| f.parse::<u32>().ok())
            .filter(|g| pgids.contains(g))
        else {
            continue;
        };
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let usage: &mut Usage = out.entry(pgid).or_default();
        usage.cpu_seconds += (num(11) + num(12)) as f64 / TICKS;
        usage.rss_bytes += num(21) * 4096;
    }
    out
}
