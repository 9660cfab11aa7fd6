//! CPU used by the machine, the server, PostgreSQL and the load generator, from `/proc`.

/// CPU seconds used so far (at the usual 100 ticks per second): by the whole machine (busy time
/// from `/proc/stat`), the server, PostgreSQL (every process named `postgres`; its backends for
/// the server's pool live through the load) and this process (the load generator).
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    machine: f64,
    server: f64,
    postgres: f64,
    me: f64,
}

impl CpuUse {
    pub fn now(server_pid: u32) -> Self {
        let mut postgres = 0.0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                match process_cpu(pid) {
                    Some((comm, secs)) if comm == "postgres" => postgres += secs,
                    _ => {}
                }
            }
        }
        Self {
            machine: Self::machine(),
            server: process_cpu(server_pid).map_or(0.0, |(_, s)| s),
            postgres,
            me: process_cpu(std::process::id()).map_or(0.0, |(_, s)| s),
        }
    }

    /// Busy CPU seconds of the whole machine (all but idle and iowait).
    pub fn machine() -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return 0.0;
        };
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return 0.0;
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is within user).
        let busy: u64 = v
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, t)| t)
            .sum();
        busy as f64 / 100.0
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            machine: self.machine - earlier.machine,
            server: self.server - earlier.server,
            postgres: self.postgres - earlier.postgres,
            me: self.me - earlier.me,
        }
    }

    /// In cores (CPU seconds per second of `wall`), with what the rest of the machine used:
    /// anything much above zero means other work disturbed the measurement.
    pub fn describe(&self, wall: f64) -> String {
        let other = (self.machine - self.server - self.postgres - self.me).max(0.0);
        let mut out = format!(
            "CPU in cores: machine {:.2} busy = server {:.2} + PostgreSQL {:.2} + load generator {:.2} + other {:.2}",
            self.machine / wall,
            self.server / wall,
            self.postgres / wall,
            self.me / wall,
            other / wall
        );
        if other / wall > 0.2 {
            out.push_str(" (WARNING: other processes were busy; the figures are disturbed)");
        }
        out
    }
}

/// A process's command name and user + system CPU seconds (`/proc/<pid>/stat`).
fn process_cpu(pid: u32) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; after it, state is the first
    // field, utime the 12th and stime the 13th.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some((comm.to_string(), (ticks(11) + ticks(12)) as f64 / 100.0))
}
