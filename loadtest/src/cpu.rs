//! CPU time spent per applied event, by process: komisi (the server pid
//! given), MariaDB, Redis and this load generator, read from `/proc` before
//! and after a run. On a machine whose cores are shared and noisy the rate a
//! run reaches moves from run to run; the CPU an event costs moves much
//! less, and it says which process a change made busier.
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system) used so far, per process group.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    seconds: BTreeMap<&'static str, f64>,
    /// The whole machine's busy and total time (all cores), from `/proc/stat`.
    machine: Option<(f64, f64)>,
}

/// The process's user + system time in seconds, when it can be read.
fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// Pids whose command name is `name`.
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name))
        .collect()
}

fn machine() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let total: f64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3)? + cpu.get(4).unwrap_or(&0.0);
    Some(((total - idle) / TICKS_PER_S, total / TICKS_PER_S))
}

impl Sample {
    pub fn take(server_pid: Option<u32>) -> Self {
        let mut seconds = BTreeMap::new();
        let sum = |pids: Vec<u32>| pids.into_iter().filter_map(process_seconds).sum::<f64>();
        if let Some(pid) = server_pid {
            seconds.insert("komisi", sum(vec![pid]));
        }
        seconds.insert("mariadb", sum(pids_named("mariadbd")));
        seconds.insert("redis", sum(pids_named("redis-server")));
        seconds.insert("loadtest", sum(vec![std::process::id()]));
        Self { seconds, machine: machine() }
    }

    /// Milliseconds of CPU per event between `self` and `after`, per process
    /// group and in all, and how busy the machine was (1.0: every core).
    pub fn per_event(&self, after: &Sample, events: f64) -> Value {
        if events <= 0.0 {
            return Value::Null;
        }
        let mut out = serde_json::Map::new();
        let mut total = 0.0;
        for (name, before) in &self.seconds {
            let Some(later) = after.seconds.get(name) else { continue };
            let ms = (later - before) * 1000.0 / events;
            total += ms;
            out.insert((*name).to_owned(), json!((ms * 1000.0).round() / 1000.0));
        }
        out.insert("total".to_owned(), json!((total * 1000.0).round() / 1000.0));
        if let (Some((busy0, all0)), Some((busy1, all1))) = (self.machine, after.machine) {
            if all1 > all0 {
                out.insert(
                    "machine_busy".to_owned(),
                    json!(((busy1 - busy0) / (all1 - all0) * 1000.0).round() / 1000.0),
                );
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_and_its_cpu_time_grows_with_work() {
        let before = Sample::take(Some(std::process::id()));
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = Sample::take(Some(std::process::id()));
        let per = before.per_event(&after, 1.0);
        // 300 ms of busy loop: at least 100 ms of CPU even on a loaded machine.
        assert!(per["komisi"].as_f64().unwrap() >= 100.0, "{per}");
        assert!(per["total"].as_f64().unwrap() >= per["komisi"].as_f64().unwrap(), "{per}");
        assert_eq!(before.per_event(&after, 0.0), Value::Null);
    }
}
