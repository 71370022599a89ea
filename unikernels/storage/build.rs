// Link flags and linker script shared by every unikernel image.
include!("../runtime/build_image.rs");
