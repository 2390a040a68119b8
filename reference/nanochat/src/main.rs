//! The `nanochat` binary: reads the command line and hands over to `train::main`.

use std::process::ExitCode;

use nanochat::prepare::{Command, USAGE, describe_data};

// mimalloc reuses freed tensor buffers instead of returning them to the kernel; with the system
// allocator a third of the time went to page faults on freshly mapped memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Command::parse(std::env::args().skip(1)) {
        Ok(Command::Train(settings)) => nanochat::train::main(&settings),
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
