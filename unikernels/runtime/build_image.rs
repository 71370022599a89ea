// Build script of every unikernel image, shared with `include!("../runtime/build_image.rs")`.
// It passes the freestanding link flags and the runtime's linker script to the image's
// binaries only (`rustc-link-arg-bins`), so host tests of library code are unaffected.

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let runtime = std::path::Path::new(&manifest_dir).join("../runtime");
    let script = runtime.join("unikernel.ld");
    let script = script
        .canonicalize()
        .unwrap_or_else(|e| panic!("linker script {}: {e}", script.display()));
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
    println!("cargo:rerun-if-changed={}", runtime.join("build_image.rs").display());
    println!("cargo:rerun-if-changed=build.rs");
}
