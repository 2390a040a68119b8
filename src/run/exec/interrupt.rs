//! Ctrl-C, SIGTERM and SIGHUP (the ssh session that started arun went away). The first asks the
//! run to stop: the running commands are stopped (SIGTERM, grace, SIGKILL to their groups), git
//! and results are left consistent, the summary is printed. The second kills the running
//! commands' groups at once and exits with 130.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The process groups of the commands running now (0: a free place), for the second Ctrl-C. A
/// fixed array: the signal handler may not lock or allocate.
static RUNNING_GROUPS: [AtomicI32; MAX_GROUPS] = [const { AtomicI32::new(0) }; MAX_GROUPS];
const MAX_GROUPS: usize = 256;

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
        for slot in &RUNNING_GROUPS {
            let group = slot.load(Ordering::SeqCst);
            if group > 0 {
                // SAFETY: async-signal-safe calls only.
                unsafe {
                    libc::killpg(group, libc::SIGKILL);
                }
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

/// Asks every running command to stop, as a first Ctrl-C does (a run that cannot go on).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Records a process group that a second Ctrl-C must kill.
pub fn add_running_group(group: i32) {
    for slot in &RUNNING_GROUPS {
        if slot
            .compare_exchange(0, group, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Forgets a process group that ended.
pub fn remove_running_group(group: i32) {
    for slot in &RUNNING_GROUPS {
        if slot
            .compare_exchange(group, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}
