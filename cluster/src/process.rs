//! This host's processes, as a lease and the scheduler's drivers need to tell them apart.

/// The start time of process `pid` (clock ticks after boot, field 22 of `/proc/PID/stat`), which
/// tells it from a later process that got the same pid; `None` when it does not exist or has
/// ended and waits only to be reaped (a zombie: a killed driver whose parent died with it).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_a_reaped_child_has_none() {
        assert!(start_time(std::process::id()).is_some());
        let mut child = std::process::Command::new("true").spawn().expect("true runs");
        let pid = child.id();
        child.wait().expect("reaped");
        assert_eq!(start_time(pid), None);
    }

    #[test]
    fn a_zombie_counts_as_gone() {
        let child = std::process::Command::new("true").spawn().expect("true runs");
        let pid = child.id();
        // Not waited for: once it exits it is a zombie until reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while start_time(pid).is_some() {
            assert!(std::time::Instant::now() < deadline, "the exited child still counts as running");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(child);
    }
}
