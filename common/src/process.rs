//! Memory of processes, as Linux reports it under `/proc` (`None` elsewhere), and the modes
//! of the files the process makes.

/// From now on, files and directories this process makes are its user's alone (`0600` and
/// `0700`): a WAL, an outbox or a silence file holds data others on the machine must not read.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The environment variable a parent sets to its process id for [`stop_with_parent`].
pub const PARENT_PID_ENV: &str = "SIGHTLINE_PARENT_PID";

/// When started by a Sightline process that set [`PARENT_PID_ENV`] (the demo's shop): ask the
/// kernel for SIGTERM when that parent dies, however it dies (a `kill -9` included), and stop
/// at once if it is already gone. Elsewhere, nothing.
pub fn stop_with_parent() {
    let Some(want) = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .is_err()
    {
        return;
    }
    if rustix::process::getppid()
        .map(rustix::process::Pid::as_raw_nonzero)
        .map(|p| p.get())
        != Some(want)
    {
        std::process::exit(0);
    }
}

/// Makes `dir` its user's alone (`0700`): whatever an earlier version left inside it with
/// wider modes is then out of others' reach too.
///
/// # Errors
/// When the directory's mode cannot be changed.
pub fn make_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Resident memory of this process (`/proc/self/statm`: cheap enough to sample every few
/// milliseconds).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// statm counts pages; the kernel's page size is in `/proc/self/smaps` (4 KiB if unreadable).
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/smaps")
            .ok()
            .and_then(|s| s.lines().find_map(|l| kb(l, "KernelPageSize:")))
            .map_or(4096, |kb| kb * 1024)
    })
}

/// The value in kB of a `/proc` line such as `VmRSS:\t  123456 kB`.
fn kb(line: &str, key: &str) -> Option<u64> {
    line.strip_prefix(key)?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident memory of a process, now and at its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub resident_bytes: u64,
    /// The most it was resident since it started (VmHWM).
    pub peak_bytes: u64,
}

/// [`Memory`] of the process `pid` (`/proc/PID/status`).
pub fn memory(pid: u32) -> Option<Memory> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_status(status: &str) -> Option<Memory> {
    let find = |key| status.lines().find_map(|l| kb(l, key));
    let rss = find("VmRSS:")?;
    let peak = find("VmHWM:").unwrap_or(rss);
    Some(Memory {
        resident_bytes: rss * 1024,
        peak_bytes: peak * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_and_this_process_has_memory() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                resident_bytes: 1 << 20,
                peak_bytes: 2 << 20
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
        let own = memory(std::process::id()).expect("linux");
        assert!(own.resident_bytes > 0 && own.peak_bytes >= own.resident_bytes);
        assert!(resident_bytes().expect("linux") > 0);
    }
}
