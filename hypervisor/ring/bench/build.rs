//! Records the optimisation level, so the report says what it measured.
fn main() {
    let level = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "?".into());
    let debug = std::env::var("DEBUG").unwrap_or_default();
    println!("cargo:rustc-env=BENCH_OPT_LEVEL={level}");
    println!("cargo:rustc-env=BENCH_DEBUG_INFO={debug}");
}
