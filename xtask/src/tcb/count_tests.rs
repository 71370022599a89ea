use super::*;

fn lines(code: u64, comment: u64, blank: u64) -> Lines {
    Lines {
        code,
        comment,
        blank,
    }
}

#[test]
fn plain_code_comments_and_blanks() {
    let src = "//! Crate doc.\n\n/// Item doc.\nfn f() {} // trailing\n    \n// c\n";
    assert_eq!(rust(src), lines(1, 3, 2));
}

#[test]
fn nested_block_comments() {
    let src = "/* outer /* inner */\n still comment */\nfn f() {} /* a */ /* b\n c */ let x = 1;\n";
    assert_eq!(rust(src), lines(2, 2, 0));
}

#[test]
fn block_comment_markers_inside_code_lines() {
    let src = "let a = 1; /* x */\n/* y */ let b = 2;\n/**/\n";
    assert_eq!(rust(src), lines(2, 1, 0));
}

#[test]
fn slashes_inside_strings_are_not_comments() {
    let src = "let url = \"http://x\"; \nlet s = \"/* not a comment\";\nlet t = 1;\n";
    assert_eq!(rust(src), lines(3, 0, 0));
}

#[test]
fn escaped_quotes_in_strings() {
    let src = "let s = \"a \\\" // b\";\nlet t = \"\\\\\"; // comment\n// c\n";
    assert_eq!(rust(src), lines(2, 1, 0));
}

#[test]
fn multi_line_strings_are_code() {
    let src = "let s = \"line one\n// inside the string\n/* also inside\n\";\n// real\n";
    assert_eq!(rust(src), lines(4, 1, 0));
}

#[test]
fn raw_strings_with_hashes() {
    let src = "let s = r#\"a \" // no\n\"# // yes\n/* */\";\n";
    // Line 3 is a block comment followed by `";` which opens an unterminated string.
    assert_eq!(rust(src).code, 3);
    let src = "let s = br##\"\"# \"## ; // c\n// d\nlet r#type = 1; // raw ident\n";
    assert_eq!(rust(src), lines(2, 1, 0));
}

#[test]
fn r_inside_identifiers_does_not_start_raw_strings() {
    let src = "let bar = \"x\"; // c\nlet for_r = 1;\n";
    assert_eq!(rust(src), lines(2, 0, 0));
}

#[test]
fn char_literals_and_lifetimes() {
    let src = "let q = '\"'; // c\nlet e = '\\''; let u = '\\u{1F600}';\nfn f<'a>(x: &'a str) -> &'a str { x }\n'outer: loop { break 'outer; }\nlet b = b'\"';\n// end\n";
    assert_eq!(rust(src), lines(5, 1, 0));
}

#[test]
fn missing_final_newline() {
    assert_eq!(rust("fn f() {}"), lines(1, 0, 0));
    assert_eq!(rust("// c"), lines(0, 1, 0));
    assert_eq!(rust(""), lines(0, 0, 0));
}

#[test]
fn asm_comments() {
    let src = "\
    .section .text, \"ax\"   # trailing
# comment
// comment
/* block
   still */ mov rax, rdi
\t
    .ascii \"a # b\"
#include \"x.h\"
#define X 1
";
    assert_eq!(asm(src), lines(5, 3, 1));
}

#[test]
fn asm_block_comment_spanning_lines() {
    let src = "/*\n\n  x\n*/\nret\n";
    assert_eq!(asm(src), lines(1, 3, 1));
}
