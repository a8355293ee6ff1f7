//! `swin-umamba info`: libtorch version, threads, SIMD level and CUDA devices.

use std::ffi::CStr;
use std::os::raw::c_char;

extern "C" {
    fn ss_libtorch_version(buffer: *mut c_char, capacity: usize);
    fn ss_aten_cpu_capability(buffer: *mut c_char, capacity: usize);
    fn ss_kernel_isa(buffer: *mut c_char, capacity: usize);
    fn ss_cuda_kernels_built() -> i32;
}

fn read_string(fill: unsafe extern "C" fn(*mut c_char, usize)) -> String {
    let mut buffer = [0 as c_char; 128];
    // SAFETY: the callee writes at most `capacity` bytes including the NUL terminator.
    unsafe {
        fill(buffer.as_mut_ptr(), buffer.len());
        CStr::from_ptr(buffer.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Build and machine facts printed by `swin-umamba info`.
#[derive(Debug, Clone)]
pub struct Info {
    pub libtorch_version: String,
    pub libtorch_lib: &'static str,
    pub threads: i32,
    pub aten_cpu_capability: String,
    pub scan_kernel_isa: String,
    pub cuda_kernels_built: bool,
    pub cuda_available: bool,
    pub cudnn_available: bool,
    pub cuda_devices: Vec<String>,
}

/// Collects the facts for `swin-umamba info`.
pub fn collect() -> Info {
    let cuda_available = tch::Cuda::is_available();
    let device_count = if cuda_available {
        tch::Cuda::device_count()
    } else {
        0
    };
    let cuda_devices = (0..device_count).map(cuda_device_name).collect();
    Info {
        libtorch_version: read_string(ss_libtorch_version),
        libtorch_lib: env!("SWIN_UMAMBA_LIBTORCH_LIB"),
        threads: tch::get_num_threads(),
        aten_cpu_capability: read_string(ss_aten_cpu_capability),
        scan_kernel_isa: read_string(ss_kernel_isa),
        // SAFETY: a plain C function without arguments.
        cuda_kernels_built: unsafe { ss_cuda_kernels_built() } != 0,
        cuda_available,
        cudnn_available: tch::Cuda::cudnn_is_available(),
        cuda_devices,
    }
}

fn cuda_device_name(index: i64) -> String {
    // libtorch's C API in tch has no device-name call; report index and memory instead.
    let device = tch::Device::Cuda(index as usize);
    let probe = tch::Tensor::zeros([1], (tch::Kind::Float, device));
    format!("cuda:{index} ({:?})", probe.device())
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "libtorch version     {}", self.libtorch_version)?;
        writeln!(f, "libtorch lib folder  {}", self.libtorch_lib)?;
        writeln!(f, "intra-op threads     {}", self.threads)?;
        writeln!(f, "ATen CPU capability  {}", self.aten_cpu_capability)?;
        writeln!(f, "scan kernel ISA      {}", self.scan_kernel_isa)?;
        writeln!(
            f,
            "CUDA scan kernels    {}",
            if self.cuda_kernels_built {
                "built"
            } else {
                "not built (no nvcc at build time)"
            }
        )?;
        writeln!(f, "CUDA available       {}", self.cuda_available)?;
        writeln!(f, "cuDNN available      {}", self.cudnn_available)?;
        if self.cuda_devices.is_empty() {
            write!(f, "CUDA devices         none")
        } else {
            write!(f, "CUDA devices         {}", self.cuda_devices.join(", "))
        }
    }
}
