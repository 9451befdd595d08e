//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), read from `/proc/self` at scrape time, and the free space of
//! the data dir's filesystem.
//!
//! `/proc` reports CPU times in clock ticks of `USER_HZ`, which Linux fixes at 100 for user
//! space whatever the kernel's own tick rate; reading `sysconf(_SC_CLK_TCK)` would need `unsafe`.

use std::path::Path;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

const USER_HZ: f64 = 100.0;

/// What one scrape read from `/proc/self` (missing fields stay `None`: a scrape never fails).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sample {
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl Sample {
    /// Reads the running process.
    pub(crate) fn read() -> Sample {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut s = Sample::parse(&stat, &status, &limits, &boot);
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        s
    }

    /// The figures of `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits` and
    /// `/proc/stat` (for the boot time).
    pub(crate) fn parse(stat: &str, status: &str, limits: &str, proc_stat: &str) -> Sample {
        // The command name (field 2) may hold spaces and parentheses: fields restart after
        // the last ')'. utime and stime are fields 14 and 15, starttime field 22.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(u), Some(s)) => Some((u + s) / USER_HZ),
            _ => None,
        };
        let boot_time = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        let start_time_seconds = match (boot_time, field(22)) {
            (Some(b), Some(t)) => Some(b + t / USER_HZ),
            _ => None,
        };
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|k| k * 1024.0)
        };
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok());
        Sample {
            cpu_seconds,
            start_time_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds: None,
            max_fds,
        }
    }
}

/// The process metrics, registered without the `fleetgate_` prefix (their standard names).
#[derive(Default)]
pub(crate) struct ProcessMetrics {
    cpu: Counter<f64, AtomicU64>,
    start_time: Gauge<f64, AtomicU64>,
    resident: Gauge<f64, AtomicU64>,
    virtual_memory: Gauge<f64, AtomicU64>,
    open_fds: Gauge<f64, AtomicU64>,
    max_fds: Gauge<f64, AtomicU64>,
    data_dir_available: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    /// Registers the process metrics in `root` and the data dir's free space in `fleetgate`.
    pub(crate) fn register(&self, root: &mut Registry) {
        root.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            self.cpu.clone(),
        );
        root.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            self.start_time.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            self.resident.clone(),
        );
        root.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            self.virtual_memory.clone(),
        );
        root.register(
            "process_open_fds",
            "Number of open file descriptors",
            self.open_fds.clone(),
        );
        root.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            self.max_fds.clone(),
        );
    }

    /// The data dir gauge, for the `fleetgate` sub-registry.
    pub(crate) fn data_dir_gauge(&self) -> Gauge<f64, AtomicU64> {
        self.data_dir_available.clone()
    }

    /// Refreshes every value (at scrape time).
    pub(crate) fn refresh(&self, data_dir: &Path) {
        let s = Sample::read();
        if let Some(cpu) = s.cpu_seconds {
            // A counter only grows: add what the kernel counted since the last scrape.
            let delta = cpu - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        for (gauge, value) in [
            (&self.start_time, s.start_time_seconds),
            (&self.resident, s.resident_bytes),
            (&self.virtual_memory, s.virtual_bytes),
            (&self.open_fds, s.open_fds),
            (&self.max_fds, s.max_fds),
        ] {
            if let Some(v) = value {
                gauge.set(v);
            }
        }
        if let Ok(fs) = rustix::fs::statvfs(data_dir) {
            self.data_dir_available
                .set(fs.f_bavail as f64 * fs.f_frsize as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (fleet gate) (x)) S 1 4242 4242 0 -1 4194560 1300 0 0 0 250 75 0 0 20 0 \
                    9 0 123400 1000000 5000 18446744073709551615";
        let status = "Name:\tfleetgate\nVmSize:\t  204800 kB\nVmRSS:\t   51200 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                524288               files\n";
        let proc_stat = "cpu  1 2 3\nbtime 1764547200\nprocesses 10\n";
        let s = Sample::parse(stat, status, limits, proc_stat);
        assert_eq!(s.cpu_seconds, Some(3.25));
        assert_eq!(s.start_time_seconds, Some(1_764_547_200.0 + 1234.0));
        assert_eq!(s.resident_bytes, Some(51200.0 * 1024.0));
        assert_eq!(s.virtual_bytes, Some(204_800.0 * 1024.0));
        assert_eq!(s.max_fds, Some(20000.0));
    }

    #[test]
    fn garbage_gives_no_figures_and_no_panic() {
        assert_eq!(Sample::parse("", "", "", ""), Sample::default());
        assert_eq!(
            Sample::parse("1 (x", "VmRSS: lots", "Max open files unlimited", "btime x"),
            Sample::default()
        );
    }

    #[test]
    fn this_process_is_readable() {
        let s = Sample::read();
        assert!(s.cpu_seconds.is_some());
        assert!(s.resident_bytes.unwrap() > 0.0);
        assert!(s.open_fds.unwrap() >= 3.0);
        assert!(s.start_time_seconds.unwrap() > 1.0e9);
    }
}
