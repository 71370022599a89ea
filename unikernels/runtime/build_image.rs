// Build script of every unikernel image, shared with `include!("../runtime/build_image.rs")`:
// the freestanding link flags with the runtime's linker script.

include!("../../hypervisor/freestanding/link_args.rs");

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let runtime = std::path::Path::new(&manifest_dir).join("../runtime");
    let script = runtime.join("unikernel.ld");
    let script = script
        .canonicalize()
        .unwrap_or_else(|e| panic!("linker script {}: {e}", script.display()));
    link_freestanding(&script);
    println!("cargo:rerun-if-changed={}", runtime.join("build_image.rs").display());
    println!("cargo:rerun-if-changed=build.rs");
}
