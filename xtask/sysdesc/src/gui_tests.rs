//! Tests of `guivm`, `window_size` and `clipboard_deny`: the GUI channels they make, the gui
//! qube's blob, the clients' blobs and command lines, and each refusal.

use super::test_support::one_problem;
use super::*;
use bulkhead_abi::label::Label;

fn qube(name: &str, image: &str, label: &str, extra: &str) -> String {
    format!(
        "[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"{image}\"\n\
         memory_mib = 4\nlabel = \"{label}\"\n{extra}\n\n"
    )
}

fn system(rest: &str) -> String {
    format!(
        "[system]\nram_mib = 512\n\n{}{rest}",
        qube("gui", "gui", "black", "")
    )
}

#[test]
fn each_client_gets_a_channel_and_the_gui_qube_lists_them() {
    let text = system(&format!(
        "{}{}",
        qube(
            "work",
            "testing",
            "blue",
            "guivm = \"gui\"\nwindow_size = \"800x600\""
        ),
        qube(
            "personal",
            "testing",
            "yellow",
            "guivm = \"gui\"\nclipboard_deny = [\"work\"]"
        ),
    ));
    let c = compile_str("systems/g.toml", &text).unwrap_or_else(|d| panic!("{d}"));
    let ch: Vec<_> = c.manifest.channels.iter().collect();
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].name.as_str(), "work.gui");
    assert_eq!((ch[0].a, ch[0].b), (0, 1), "side A the gui qube");
    assert_eq!(ch[0].bulk_size, gui::bulk_size(800, 600));
    assert!(ch[0].bulk_size as usize >= 2 * (800 * 600 * 4 + 256 * 1024));
    assert_eq!(ch[1].purpose.as_str(), "gui");
    let gui = c
        .configs
        .iter()
        .find(|b| b.qube == 0)
        .expect("the gui qube's blob");
    let server = gui.config.gui.as_ref().expect("its clients");
    let names: Vec<_> = server
        .clients
        .iter()
        .map(|c| (c.qube.as_str(), c.label, c.max_width))
        .collect();
    assert_eq!(
        names,
        [
            ("work", Label::Blue as u8, 800),
            ("personal", Label::Yellow as u8, 640)
        ]
    );
    assert_eq!(server.clipboard_deny.as_slice(), &[(1, 0)]);
    let work = c.configs.iter().find(|b| b.qube == 1).expect("work's blob");
    assert_eq!(work.config.gui_channel.as_deref(), Some("work.gui"));
}

#[test]
fn refusals() {
    one_problem(
        &system(&qube("a", "testing", "red", "guivm = \"nope\"")),
        "qube \"a\".guivm",
        "unknown guivm \"nope\"",
    );
    one_problem(
        &system(&format!(
            "{}{}",
            qube("b", "testing", "red", ""),
            qube("a", "testing", "red", "guivm = \"b\"")
        )),
        "qube \"a\".guivm",
        "\"b\" is not a gui qube",
    );
    one_problem(
        &format!(
            "[system]\nram_mib = 512\n\n{}",
            qube("gui", "gui", "black", "guivm = \"gui\"")
        ),
        "qube \"gui\".guivm",
        "cannot show its own windows",
    );
    for bad in ["800", "0x600", "99999x10", "4096x4096"] {
        one_problem(
            &system(&qube(
                "a",
                "testing",
                "red",
                &format!("guivm = \"gui\"\nwindow_size = \"{bad}\""),
            )),
            "qube \"a\".window_size",
            "is not a window size",
        );
    }
    one_problem(
        &system(&qube("a", "testing", "red", "window_size = \"800x600\"")),
        "qube \"a\".window_size",
        "window_size without guivm",
    );
    one_problem(
        &system(&qube(
            "a",
            "testing",
            "red",
            "guivm = \"gui\"\nclipboard_deny = [\"zz\"]",
        )),
        "qube \"a\".clipboard_deny",
        "unknown qube \"zz\"",
    );
    one_problem(
        &system(&qube(
            "a",
            "testing",
            "red",
            "guivm = \"gui\"\nclipboard_deny = [\"a\"]",
        )),
        "qube \"a\".clipboard_deny",
        "is this qube",
    );
}
