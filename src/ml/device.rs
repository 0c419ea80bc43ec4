//! Device selection: a wgpu adapter (a GPU) when there is one, else the CPU through burn's
//! flex backend; `ml.device` forces either.
//!
//! `auto` takes a wgpu adapter only when it is real hardware: a software rasteriser (mesa's
//! llvmpipe/lavapipe) runs burn's kernels about 15× slower than flex on the same cores, so
//! `auto` uses flex there. `gpu` takes any wgpu adapter, software ones included (that is how
//! the GPU code path is tested on machines without a GPU) and fails when there is none.
//! The wgpu runtime can be initialised once per process, so its outcome is cached.

use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;
use serde::Serialize;

use super::MlError;

/// The `ml.device` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePref {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

impl FromStr for DevicePref {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DevicePref::Auto),
            "cpu" => Ok(DevicePref::Cpu),
            "gpu" => Ok(DevicePref::Gpu),
            other => Err(format!("ml.device must be \"auto\", \"cpu\" or \"gpu\", got `{other}`")),
        }
    }
}

/// What `lucent doctor` prints about the device in use.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceInfo {
    /// `wgpu` or `flex`.
    pub backend: String,
    /// The adapter's name (`llvmpipe (LLVM 19.1.7, 256 bits)`, `NVIDIA H100`) or the CPU's.
    pub adapter: String,
    /// The graphics API under wgpu (Vulkan, Metal, Dx12, Gl), or `cpu`.
    pub api: String,
    /// wgpu's device type: DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu; or `cpu` for flex.
    pub device_type: String,
    pub driver: String,
    /// Largest single buffer the adapter allows (wgpu does not report total device memory);
    /// for flex, the machine's memory.
    pub memory_bytes: Option<u64>,
    pub memory_note: String,
    /// Why this device was chosen (e.g. why a found adapter was not used).
    pub reason: String,
}

/// A selected device and its description.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub device: Device,
    pub info: DeviceInfo,
}

impl Runtime {
    pub fn is_gpu(&self) -> bool {
        self.info.backend == "wgpu"
    }
}

struct WgpuFound {
    device: Device,
    info: DeviceInfo,
    software: bool,
}

static WGPU: OnceLock<Result<WgpuFound, String>> = OnceLock::new();

fn wgpu_probe() -> &'static Result<WgpuFound, String> {
    WGPU.get_or_init(|| {
        // Adapter discovery may panic inside a driver on broken installations; treat that as
        // "no adapter" rather than taking the process down.
        let attempt = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
        match attempt {
            Ok(Ok((device, setup))) => {
                let ai = setup.adapter.get_info();
                let limits = setup.adapter.limits();
                let device_type = format!("{:?}", ai.device_type);
                Ok(WgpuFound {
                    device,
                    software: matches!(ai.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu),
                    info: DeviceInfo {
                        backend: "wgpu".into(),
                        adapter: ai.name.clone(),
                        api: format!("{:?}", setup.backend),
                        device_type,
                        driver: format!("{} {}", ai.driver, ai.driver_info).trim().to_string(),
                        memory_bytes: Some(limits.max_buffer_size),
                        memory_note: "largest buffer (wgpu does not report total device memory)".into(),
                        reason: String::new(),
                    },
                })
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the wgpu adapter search panicked".into()),
        }
    })
}

fn flex(reason: String) -> Runtime {
    Runtime {
        device: Device::flex(),
        info: DeviceInfo {
            backend: "flex".into(),
            adapter: cpu_name(),
            api: "cpu".into(),
            device_type: "cpu".into(),
            driver: format!(
                "burn-flex, {} threads",
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
            ),
            memory_bytes: mem_total(),
            memory_note: "system memory".into(),
            reason,
        },
    }
}

/// Selects the device for `pref` (see the module documentation for the rules).
pub fn select(pref: DevicePref) -> Result<Runtime, MlError> {
    match pref {
        DevicePref::Cpu => Ok(flex("ml.device = \"cpu\"".into())),
        DevicePref::Gpu => match wgpu_probe() {
            Ok(w) => {
                let mut info = w.info.clone();
                info.reason = "ml.device = \"gpu\"".into();
                Ok(Runtime { device: w.device.clone(), info })
            }
            Err(e) => Err(MlError::Device(format!("ml.device = \"gpu\" but no wgpu adapter could be used: {e}"))),
        },
        DevicePref::Auto => match wgpu_probe() {
            Ok(w) if !w.software => {
                let mut info = w.info.clone();
                info.reason = "auto: hardware adapter found".into();
                Ok(Runtime { device: w.device.clone(), info })
            }
            Ok(w) => Ok(flex(format!(
                "auto: only a software adapter ({}) was found; flex is faster on the CPU (set ml.device = \"gpu\" to use it)",
                w.info.adapter
            ))),
            Err(e) => Ok(flex(format!("auto: no wgpu adapter ({e})"))),
        },
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn mem_total() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_parses_and_cpu_is_flex() {
        assert_eq!("AUTO".parse::<DevicePref>(), Ok(DevicePref::Auto));
        assert_eq!("gpu".parse::<DevicePref>(), Ok(DevicePref::Gpu));
        assert!("tpu".parse::<DevicePref>().unwrap_err().contains("auto"));
        let rt = select(DevicePref::Cpu).unwrap();
        assert_eq!(rt.info.backend, "flex");
        assert!(!rt.is_gpu());
    }
}
