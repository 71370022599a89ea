//! Helpers the unit tests share: the problems of a description that must not compile.

use super::compile_str;
use super::diagnostics::Diagnostic;

/// The problems of `text`, which must not compile.
pub(super) fn problems(text: &str) -> Vec<Diagnostic> {
    match compile_str("systems/t.toml", text) {
        Ok(_) => panic!("compiled, but should not have:\n{text}"),
        Err(d) => d.iter().cloned().collect(),
    }
}

/// The one problem of `text`: under `key`, its message containing `message`.
pub(super) fn one_problem(text: &str, key: &str, message: &str) {
    let found = problems(text);
    assert_eq!(
        found.len(),
        1,
        "one problem expected in\n{text}\n{found:#?}"
    );
    assert_eq!(found[0].key, key, "{}", found[0]);
    assert!(
        found[0].message.contains(message),
        "{}\nlacks {message:?}",
        found[0]
    );
}
