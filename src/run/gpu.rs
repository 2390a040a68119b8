//! GPU memory from NVML: the peak memory of an experiment's processes. No GPU, no driver, or no
//! process of the experiment on a GPU gives `None`, never an error.

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;

pub struct GpuMonitor {
    nvml: Nvml,
    devices: u32,
}

impl GpuMonitor {
    /// Connects to the NVIDIA driver, when there is one.
    pub fn connect() -> Option<GpuMonitor> {
        let nvml = Nvml::init().ok()?;
        let devices = nvml.device_count().ok()?;
        (devices > 0).then_some(GpuMonitor { nvml, devices })
    }

    /// How many GPUs the driver sees.
    pub fn count(&self) -> u32 {
        self.devices
    }

    /// GPU memory in bytes used now by the processes of process group `group`, summed over
    /// every GPU; `None` when none of them is on a GPU (or their PIDs are not visible, as inside
    /// some containers).
    pub fn group_memory(&self, group: i32) -> Option<u64> {
        let mut total = 0;
        let mut seen = false;
        for index in 0..self.devices {
            let Ok(device) = self.nvml.device_by_index(index) else {
                continue;
            };
            for process in device.running_compute_processes().unwrap_or_default() {
                if process_group(process.pid) == Some(group) {
                    seen = true;
                    if let UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
                        total += bytes;
                    }
                }
            }
        }
        seen.then_some(total)
    }
}

/// The process group of `pid`, from `/proc/<pid>/stat` (field 5, after the command name).
fn process_group(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(2)?.parse().ok()
}

/// Tracks the peak of repeated samples.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peak {
    bytes: Option<u64>,
}

impl Peak {
    pub fn observe(&mut self, bytes: Option<u64>) {
        if let Some(bytes) = bytes {
            self.bytes = Some(self.bytes.map_or(bytes, |peak| peak.max(bytes)));
        }
    }

    pub fn gb(&self) -> Option<f64> {
        self.bytes.map(|b| b as f64 / (1024.0 * 1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process_group() {
        // SAFETY: getpgrp has no preconditions.
        let ours = unsafe { libc::getpgrp() };
        assert_eq!(process_group(std::process::id()), Some(ours));
        assert_eq!(process_group(u32::MAX), None);
    }

    #[test]
    fn peak_keeps_the_largest_sample() {
        let mut peak = Peak::default();
        assert_eq!(peak.gb(), None);
        peak.observe(Some(2 << 30));
        peak.observe(None);
        peak.observe(Some(1 << 30));
        assert_eq!(peak.gb(), Some(2.0));
    }
}
