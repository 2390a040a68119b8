//! Ctrl-C, SIGTERM and SIGHUP (the ssh session that started arun went away). The first asks the
//! run to stop: the running command is stopped (SIGTERM, grace, SIGKILL to its group), git and
//! results are left consistent, the summary is printed. The second kills the running command's
//! group at once and exits with 130.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);

/// Installs the handlers for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> std::io::Result<()> {
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // SAFETY: the handler only touches atomics and calls killpg and _exit, all of which are
        // async-signal-safe.
        unsafe {
            signal_hook::low_level::register(signal, on_signal)?;
        }
    }
    Ok(())
}

fn on_signal() {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        let group = RUNNING_GROUP.load(Ordering::SeqCst);
        if group > 0 {
            // SAFETY: async-signal-safe calls only.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
        // SAFETY: _exit is async-signal-safe and skips destructors on purpose.
        unsafe { libc::_exit(130) }
    }
}

/// Whether the user asked the run to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Records the process group that a second Ctrl-C must kill (0: none).
pub fn set_running_group(group: i32) {
    RUNNING_GROUP.store(group, Ordering::SeqCst);
}
