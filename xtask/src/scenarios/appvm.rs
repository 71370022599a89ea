//! The Linux AppVM template (`cargo xtask appvm`): Debian's cloud kernel with the initramfs
//! xtask builds (busybox, the modules, `/init`, the agent) boots in plain QEMU to
//! `appvm: init ok` and `agent: ready`. This checks the template, not the hypervisor (which
//! does not boot Linux yet). Skipped only when Debian's kernel package cannot be fetched.

use super::Scenario;
use crate::appvm;
use anyhow::Result;

pub const APPVM_TEMPLATE: Scenario = Scenario {
    name: "appvm-template",
    about: "the AppVM template (Debian cloud kernel + initramfs + agent) boots in plain QEMU to agent-ready",
    run: template,
};

fn template() -> Result<String> {
    if let Err(why) = appvm::kernel_available() {
        return Ok(format!(
            "skipped: Debian's kernel package is not available here: {why}"
        ));
    }
    appvm::verb(appvm::Options {
        check_in_qemu: true,
        ..appvm::Options::default()
    })?;
    Ok("init ok and agent ready in plain QEMU (wall times printed above)".into())
}
