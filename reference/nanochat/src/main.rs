//! The `nanochat` binary: reads the command line, then lets the read-only harness
//! (`prepare::run`) train with the editable `train::main`, evaluate and print the summary.

use std::process::ExitCode;

use nanochat::prepare::{Command, USAGE, describe_data, run};

// mimalloc reuses freed tensor buffers instead of returning them to the kernel; with the system
// allocator a third of the time went to page faults on freshly mapped memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (part of the statically linked library).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
/// `mi_option_purge_delay` in mimalloc 3: how long freed memory waits before it is returned to
/// the OS. Every training step frees and reallocates the same large buffers, so never returning
/// them saves the page faults of mapping them again (about 10% of a step).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> ExitCode {
    // SAFETY: sets a plain integer option; mimalloc reads options on each purge decision.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    match Command::parse(std::env::args().skip(1)) {
        Ok(Command::Train(settings)) => run(&settings, nanochat::train::main),
        Ok(Command::Prepare(settings)) => match describe_data(&settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
