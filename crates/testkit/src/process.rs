//! Child processes that never outlive their test.
//!
//! A test that spawns `thulium listen` (or `strace` running it) and then fails,
//! panics or times out must not leave the listener running: orphans keep retrying
//! their forwards forever and hold ports and files. [`Guarded`] starts the child as
//! the leader of a process group of its own and kills the whole group (a traced
//! grandchild included) when dropped, pass, fail or panic. [`leftovers`] finds what
//! escaped anyway, for a test to assert that nothing did.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};

/// A child process, and every process it starts, killed and reaped when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    reaped: bool,
}

impl Guarded {
    /// Spawns `command` in a process group of its own.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let child = command.process_group(0).spawn()?;
        Ok(Self {
            child,
            reaped: false,
        })
    }

    /// The child's process id (also its process group's id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its exit status if it has ended (the group's other members are killed then).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() && !self.reaped {
            self.reaped = true;
            signal_group(self.id(), "KILL");
        }
        Ok(status)
    }

    /// Waits for the child to end by itself.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = true;
        signal_group(self.id(), "KILL");
        Ok(status)
    }

    /// Sends `signal` (a name such as `INT` or `TERM`) to the child alone.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &self.id().to_string()])
            .status();
    }

    /// Kills the child and its whole group with SIGKILL and reaps the child.
    pub fn kill(&mut self) -> ExitStatus {
        signal_group(self.id(), "KILL");
        let _ = self.child.kill();
        let status = self.child.wait().expect("reaping a killed child");
        self.reaped = true;
        status
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        signal_group(self.id(), "KILL");
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to every process of group `group`; a group already gone is fine.
fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{group}")])
        .stderr(std::process::Stdio::null())
        .status();
}

/// The processes still running whose command line contains `marker` (a test's
/// temporary directory, say), as `(pid, command line)`: for a test to assert that
/// none of its children escaped. Reads `/proc`; empty where there is none.
pub fn leftovers(marker: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            let alive = std::fs::read_to_string(entry.path().join("stat"))
                .is_ok_and(|stat| !stat.contains(") Z "));
            (pid != own && alive && line.contains(marker)).then(|| (pid, line.trim().to_owned()))
        })
        .collect()
}
