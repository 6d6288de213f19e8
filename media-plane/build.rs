//! Builds the XDP program (`xdp/media_redirect.bpf.c`, issue 13) with clang's BPF target
//! when clang and libbpf's headers are installed (Debian clang, llvm, libbpf-dev:
//! `ci/install-deps.sh build`). Without them the media plane builds all the same, and the
//! af_xdp backend reports at start that the program was not built.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "xdp/media_redirect.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo::rustc-check-cfg=cfg(xdp_program)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("media_redirect.bpf.o");
    let arch_include = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let built = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", src, "-o"])
        .arg(&out)
        .arg(format!("-I{arch_include}"))
        .status()
        .is_ok_and(|s| s.success());
    if built {
        println!("cargo:rustc-cfg=xdp_program");
    } else {
        println!(
            "cargo:warning=the XDP program was not built (clang with libbpf-dev's headers not found): the af_xdp media backend is unavailable in this build"
        );
        std::fs::write(&out, b"").expect("OUT_DIR is writable");
    }
}
