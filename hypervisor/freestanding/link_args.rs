// Link flags of every freestanding image (the hypervisor and each unikernel), shared by their
// build scripts with `include!`. They go to the image's binaries only (`rustc-link-arg-bins`),
// so host tests of library code are unaffected. See ../shared/PLATFORM.md.

/// Emits the freestanding link flags and `-T script`, and asks cargo to rebuild when the
/// script changes.
fn link_freestanding(script: &std::path::Path) {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=4096",
        "-Wl,-n",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
    // This file needs no `rerun-if-changed`: it is part of the build script's source, so a
    // change rebuilds and reruns the script. (`file!()` is relative to the workspace root, but
    // cargo reads that path relative to the package: a path that never exists, which made
    // cargo rerun every image's build script and relink on every build.)
}
