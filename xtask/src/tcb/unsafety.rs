//! Counts `unsafe` sites in Rust source with syn's visitor.
//!
//! syn does not look inside macro invocations or `macro_rules!` bodies, so their token streams
//! are scanned for `unsafe {`, `unsafe fn`, `unsafe impl` and `unsafe trait` too (counted in the
//! same fields and also in [`UnsafeCounts::in_macros`]).
//!
//! "Undocumented" is a text heuristic in the spirit of clippy's `undocumented_unsafe_blocks`:
//! an unsafe block or impl is documented if its own line, or a comment line above it, says
//! `SAFETY:`; the search goes up through comment lines, attributes and the earlier lines of the
//! same statement, and stops at a blank line or a line that ends a statement (`;` or `}`).

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use serde::Serialize;
use syn::visit::{self, Visit};

/// The unsafe sites of one file or a sum of files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnsafeCounts {
    /// `unsafe { .. }` blocks.
    pub blocks: u64,
    /// `unsafe fn` (free functions, methods, trait methods).
    pub fns: u64,
    /// `unsafe impl`.
    pub impls: u64,
    /// `unsafe trait`.
    pub traits: u64,
    /// `unsafe extern` blocks (Rust 2024 foreign blocks).
    pub extern_blocks: u64,
    /// Unsafe attributes such as `#[unsafe(no_mangle)]`.
    pub attributes: u64,
    /// How many of the blocks, fns, impls and traits were found inside macro tokens.
    pub in_macros: u64,
    /// Unsafe blocks and impls without a `SAFETY:` comment (heuristic, see module docs).
    pub undocumented: u64,
    /// `unsafe fn` declarations without a `# Safety` doc section (trait impls excluded).
    pub fns_without_safety_doc: u64,
}

impl UnsafeCounts {
    /// Blocks + fns + impls + traits: the number reported as "unsafe" in the table.
    pub fn sites(&self) -> u64 {
        self.blocks + self.fns + self.impls + self.traits
    }
}

impl std::ops::AddAssign for UnsafeCounts {
    fn add_assign(&mut self, o: UnsafeCounts) {
        self.blocks += o.blocks;
        self.fns += o.fns;
        self.impls += o.impls;
        self.traits += o.traits;
        self.extern_blocks += o.extern_blocks;
        self.attributes += o.attributes;
        self.in_macros += o.in_macros;
        self.undocumented += o.undocumented;
        self.fns_without_safety_doc += o.fns_without_safety_doc;
    }
}

/// A file syn could not parse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParseError {
    /// 1-based line of the error.
    pub line: usize,
    /// syn's message.
    pub message: String,
}

/// Counts the unsafe sites of one Rust file.
#[cfg(test)]
pub fn count(src: &str) -> Result<UnsafeCounts, ParseError> {
    Ok(count_file(&parse(src)?, src))
}

/// Parses one Rust file.
pub fn parse(src: &str) -> Result<syn::File, ParseError> {
    syn::parse_file(src).map_err(|e| ParseError {
        line: e.span().start().line,
        message: e.to_string(),
    })
}

/// Counts the unsafe sites of a parsed file (`src` is its text, for the SAFETY comments).
pub fn count_file(file: &syn::File, src: &str) -> UnsafeCounts {
    let mut v = Counter {
        lines: src.lines().collect(),
        counts: UnsafeCounts::default(),
        in_trait_impl: false,
    };
    v.visit_file(file);
    v.counts
}

struct Counter<'a> {
    lines: Vec<&'a str>,
    counts: UnsafeCounts,
    in_trait_impl: bool,
}

impl Counter<'_> {
    fn check_comment(&mut self, span: Span) {
        if !has_safety_comment(&self.lines, span.start().line) {
            self.counts.undocumented += 1;
        }
    }

    fn unsafe_fn(&mut self, sig: &syn::Signature, attrs: &[syn::Attribute], needs_doc: bool) {
        if matches!(sig.safety, syn::Safety::Unsafe(_)) {
            self.counts.fns += 1;
            if needs_doc && !has_safety_doc(attrs) {
                self.counts.fns_without_safety_doc += 1;
            }
        }
    }

    /// Scans a macro's tokens (recursively) for unsafe sites syn did not parse.
    fn scan(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(g) => {
                    // `#[unsafe(..)]` attribute: `#` then a bracket group starting `unsafe`.
                    let after_hash = matches!(trees.get(i.wrapping_sub(1)), Some(TokenTree::Punct(p)) if p.as_char() == '#');
                    let first = g.stream().into_iter().next();
                    if after_hash
                        && g.delimiter() == Delimiter::Bracket
                        && matches!(first, Some(TokenTree::Ident(id)) if id == "unsafe")
                    {
                        self.counts.attributes += 1;
                    }
                    self.scan(g.stream())
                }
                TokenTree::Ident(id) if id == "unsafe" => {
                    let before_macros = self.counts.sites();
                    match trees.get(i + 1) {
                        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                            self.counts.blocks += 1;
                            self.check_comment(id.span());
                        }
                        Some(TokenTree::Ident(next)) if next == "impl" => {
                            self.counts.impls += 1;
                            self.check_comment(id.span());
                        }
                        Some(TokenTree::Ident(next)) if next == "trait" => self.counts.traits += 1,
                        Some(TokenTree::Ident(next)) if next == "fn" => self.counts.fns += 1,
                        Some(TokenTree::Ident(next)) if next == "extern" => {
                            // `unsafe extern "C" fn` or an `unsafe extern "C" { .. }` block.
                            let is_fn = trees[i + 2..]
                                .iter()
                                .take(2)
                                .any(|t| matches!(t, TokenTree::Ident(f) if f == "fn"));
                            if is_fn {
                                self.counts.fns += 1;
                            } else {
                                self.counts.extern_blocks += 1;
                            }
                        }
                        _ => {}
                    }
                    self.counts.in_macros += self.counts.sites() - before_macros;
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Counter<'_> {
    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.counts.blocks += 1;
        self.check_comment(e.unsafe_token.span);
        visit::visit_expr_unsafe(self, e);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.unsafe_fn(&f.sig, &f.attrs, true);
        let outer = std::mem::replace(&mut self.in_trait_impl, false);
        visit::visit_item_fn(self, f);
        self.in_trait_impl = outer;
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.unsafe_fn(&f.sig, &f.attrs, !self.in_trait_impl);
        let outer = std::mem::replace(&mut self.in_trait_impl, false);
        visit::visit_impl_item_fn(self, f);
        self.in_trait_impl = outer;
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        self.unsafe_fn(&f.sig, &f.attrs, true);
        visit::visit_trait_item_fn(self, f);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if let Some(token) = &i.unsafety {
            self.counts.impls += 1;
            self.check_comment(token.span);
        }
        let outer = std::mem::replace(&mut self.in_trait_impl, i.trait_.is_some());
        visit::visit_item_impl(self, i);
        self.in_trait_impl = outer;
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        if t.unsafety.is_some() {
            self.counts.traits += 1;
        }
        visit::visit_item_trait(self, t);
    }

    fn visit_item_foreign_mod(&mut self, m: &'ast syn::ItemForeignMod) {
        if m.unsafety.is_some() {
            self.counts.extern_blocks += 1;
        }
        visit::visit_item_foreign_mod(self, m);
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if a.path().is_ident("unsafe") {
            self.counts.attributes += 1;
        }
        visit::visit_attribute(self, a);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.scan(m.tokens.clone());
        visit::visit_macro(self, m);
    }
}

/// Whether doc attributes contain a `# Safety` section heading.
fn has_safety_doc(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .any(|a| match &a.meta {
            syn::Meta::NameValue(nv) => {
                match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => s.value().lines().map(str::trim).any(|l| {
                        l.starts_with('#') && l.trim_start_matches('#').trim() == "Safety"
                    }),
                    _ => false,
                }
            }
            _ => false,
        })
}

/// The heuristic described in the module docs; `line` is 1-based.
fn has_safety_comment(lines: &[&str], line: usize) -> bool {
    let Some(own) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return true;
    };
    if own.contains("SAFETY:") {
        return true;
    }
    for text in lines[..line - 1].iter().rev().take(40) {
        let t = text.trim();
        if t.is_empty() {
            return false;
        }
        if t.starts_with("//") || t.starts_with("/*") || t.starts_with('*') {
            if t.contains("SAFETY:") {
                return true;
            }
        } else {
            // Drop a trailing comment (naively: strings holding ` //` are rare here).
            let code = t.split(" //").next().unwrap_or(t).trim_end();
            if !code.starts_with("#[")
                && (code.ends_with(';') || code.ends_with('}') || code.ends_with("},"))
            {
                return false;
            }
        }
    }
    false
}

#[cfg(test)]
#[path = "unsafety_tests.rs"]
mod tests;
