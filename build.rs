//! Build script: compiles the selective-scan extension in `csrc/`, emits an rpath to
//! libtorch's lib folder so the binary runs without `LD_LIBRARY_PATH`, and force-links
//! `libtorch_cuda` when it exists (the linker's `--as-needed` would otherwise drop it,
//! because no Rust symbol references it, and CUDA would silently be missing).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=SWIN_UMAMBA_NVCC");
    println!("cargo:rerun-if-env-changed=SWIN_UMAMBA_NO_CUDA");

    // torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=DIR`, which cargo
    // hands to direct dependents as DEP_TCH_LIBTORCH_LIB.
    let lib_dir = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report libtorch's lib folder (DEP_TCH_LIBTORCH_LIB)"),
    );
    let torch_root = lib_dir
        .parent()
        .expect("libtorch lib folder has a parent")
        .to_path_buf();
    let includes = [
        torch_root.join("include"),
        torch_root.join("include/torch/csrc/api/include"),
    ];

    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!(
        "cargo:rustc-env=SWIN_UMAMBA_LIBTORCH_LIB={}",
        lib_dir.display()
    );
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib_dir.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }

    let csrc = Path::new("csrc/selective_scan");
    let mut generic = Vec::new();
    let mut avx2 = Vec::new();
    let mut avx512 = Vec::new();
    let mut cuda = Vec::new();
    for entry in std::fs::read_dir(csrc).expect("csrc/selective_scan is readable") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with("_avx512.cpp") {
            avx512.push(path);
        } else if name.ends_with("_avx2.cpp") {
            avx2.push(path);
        } else if name.ends_with(".cpp") {
            generic.push(path);
        } else if name.ends_with(".cu") {
            cuda.push(path);
        }
    }
    generic.sort();
    avx2.sort();
    avx512.sort();
    cuda.sort();

    let nvcc = find_nvcc();
    let with_cuda = nvcc.is_some() && !cuda.is_empty();

    let base = |files: &[PathBuf], flags: &[&str], name: &str| {
        if files.is_empty() {
            return;
        }
        let mut build = cc::Build::new();
        build.cpp(true).std("c++17").opt_level(3).warnings(false);
        // libtorch is built with OpenMP, and `at::parallel_for` is an inline template whose
        // `#pragma omp parallel` is compiled into our own translation units: without
        // -fopenmp that pragma is ignored and the scan kernel runs on one thread.
        build.flag("-D_GLIBCXX_USE_CXX11_ABI=1").flag("-fopenmp");
        if with_cuda {
            build.define("SWIN_UMAMBA_WITH_CUDA", None);
        }
        for include in &includes {
            build.include(include);
        }
        build.include(csrc);
        for flag in flags {
            build.flag(flag);
        }
        build.files(files);
        build.compile(name);
    };
    base(&generic, &[], "ss_generic");
    base(&avx2, &["-mavx2", "-mfma"], "ss_avx2");
    base(
        &avx512,
        &["-mavx512f", "-mavx512dq", "-mavx512vl", "-mfma"],
        "ss_avx512",
    );

    if let (true, Some(nvcc)) = (with_cuda, nvcc) {
        build_cuda(&nvcc, &cuda, csrc);
    }
    println!("cargo:rustc-cfg=swin_umamba_cuda_built=\"{}\"", with_cuda);
    println!("cargo::rustc-check-cfg=cfg(swin_umamba_cuda_built, values(\"true\", \"false\"))");
}

/// Looks for nvcc in `SWIN_UMAMBA_NVCC`, `$CUDA_HOME/bin` and `PATH`; CPU machines have none.
fn find_nvcc() -> Option<PathBuf> {
    if env::var_os("SWIN_UMAMBA_NO_CUDA").is_some() {
        return None;
    }
    if let Some(path) = env::var_os("SWIN_UMAMBA_NVCC") {
        return Some(PathBuf::from(path));
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        let candidate = PathBuf::from(home).join("bin/nvcc");
        if candidate.exists() {
            return Some(candidate);
        }
    }
    let output = Command::new("sh")
        .args(["-c", "command -v nvcc"])
        .output()
        .ok()?;
    let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!found.is_empty()).then(|| PathBuf::from(found))
}

/// Compiles the plain CUDA C++ kernels (no torch headers) into a static library and links
/// the CUDA runtime found next to nvcc.
fn build_cuda(nvcc: &Path, files: &[PathBuf], csrc: &Path) {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut objects = Vec::new();
    for file in files {
        let object = out_dir.join(file.file_stem().unwrap()).with_extension("o");
        let status = Command::new(nvcc)
            .args([
                "-c",
                "-O3",
                "-std=c++17",
                "--use_fast_math",
                "-Xcompiler",
                "-fPIC",
            ])
            .args(["-gencode", "arch=compute_80,code=sm_80"])
            .args(["-gencode", "arch=compute_90,code=sm_90"])
            .arg("-I")
            .arg(csrc)
            .arg(file)
            .arg("-o")
            .arg(&object)
            .status()
            .expect("failed to run nvcc");
        assert!(status.success(), "nvcc failed on {}", file.display());
        objects.push(object);
    }
    let archive = out_dir.join("libss_cuda.a");
    let status = Command::new("ar")
        .arg("crs")
        .arg(&archive)
        .args(&objects)
        .status()
        .expect("failed to run ar");
    assert!(status.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    println!("cargo:rustc-link-lib=static=ss_cuda");
    let cuda_lib = nvcc.parent().unwrap().parent().unwrap().join("lib64");
    println!("cargo:rustc-link-search=native={}", cuda_lib.display());
    println!("cargo:rustc-link-lib=dylib=cudart");
}
