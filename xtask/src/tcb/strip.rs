//! Removes what a build does not compile from a parsed Rust file, like rustc's cfg-stripping:
//! items, statements, fields, variants, match arms and struct-literal fields whose `#[cfg]`
//! does not hold, and `#[test]` functions. What is removed is remembered by line span (to count
//! those lines apart) and, for `mod name;` declarations, by the module file it would have read.
//!
//! Not seen: `#[cfg]` inside macro invocations and `macro_rules!` bodies, and `cfg_attr`s that
//! expand to `cfg`. A `#![cfg(..)]` at the top of the file removes the whole file.

use super::cfg::{Cfg, Off};
use super::count::{Kind, Lines};
use std::path::{Path, PathBuf};
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Expr, Item, spanned::Spanned};

/// One removed piece of source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// 1-based line and 0-based column (in chars) of its first token, attributes included.
    pub start: (usize, usize),
    /// Line and column just after its last token.
    pub end: (usize, usize),
    /// Why.
    pub why: Off,
}

/// An out-of-line module (`mod name;`) that is not compiled in, so its file is not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedMod {
    /// The inline modules it is declared in (`mod a { mod b { mod name; } }`: `[a, b]`).
    pub inline: Vec<String>,
    /// Its name.
    pub name: String,
    /// Its `#[path = ".."]`, if any.
    pub path: Option<String>,
    /// Why.
    pub why: Off,
}

/// What [`strip`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stripped {
    /// The whole file (a `#![cfg(..)]` that does not hold).
    pub whole_file: Option<Off>,
    /// Removed pieces, in source order of their visit.
    pub removed: Vec<Removed>,
    /// Removed out-of-line modules.
    pub mods: Vec<RemovedMod>,
}

/// Removes from `file` what `cfg` compiles out.
pub fn strip(file: &mut syn::File, cfg: &Cfg) -> Stripped {
    let mut s = Stripper {
        cfg,
        out: Stripped::default(),
        inline: Vec::new(),
    };
    if let Some(why) = cfg.item(&file.attrs) {
        s.out.whole_file = Some(why);
        file.items.clear();
        return s.out;
    }
    s.visit_file_mut(file);
    s.out
}

struct Stripper<'c> {
    cfg: &'c Cfg,
    out: Stripped,
    inline: Vec<String>,
}

impl Stripper<'_> {
    /// Keeps the elements `attrs_of` says are compiled in; records the others.
    fn retain<T: Spanned>(&mut self, v: &mut Vec<T>, attrs_of: impl Fn(&T) -> &[Attribute]) {
        v.retain(|x| match self.cfg.item(attrs_of(x)) {
            None => true,
            Some(why) => {
                let span = x.span();
                let (start, end) = (span.start(), span.end());
                self.out.removed.push(Removed {
                    start: (start.line, start.column),
                    end: (end.line, end.column),
                    why,
                });
                false
            }
        });
    }

    fn retain_punct<T: Spanned, P: Default>(
        &mut self,
        p: &mut syn::punctuated::Punctuated<T, P>,
        attrs_of: impl Fn(&T) -> &[Attribute],
    ) {
        let mut v: Vec<T> = std::mem::take(p).into_iter().collect();
        self.retain(&mut v, attrs_of);
        p.extend(v);
    }

    /// Records the out-of-line modules among `items` that are compiled out.
    fn note_mods(&mut self, items: &[Item]) {
        for item in items {
            let Item::Mod(m) = item else { continue };
            if m.content.is_some() {
                continue;
            }
            if let Some(why) = self.cfg.item(&m.attrs) {
                self.out.mods.push(RemovedMod {
                    inline: self.inline.clone(),
                    name: m.ident.to_string(),
                    path: path_attr(&m.attrs),
                    why,
                });
            }
        }
    }

    fn items(&mut self, items: &mut Vec<Item>) {
        self.note_mods(items);
        self.retain(items, item_attrs);
    }
}

impl VisitMut for Stripper<'_> {
    fn visit_file_mut(&mut self, f: &mut syn::File) {
        self.items(&mut f.items);
        visit_mut::visit_file_mut(self, f);
    }

    fn visit_item_mod_mut(&mut self, m: &mut syn::ItemMod) {
        if let Some((_, items)) = &mut m.content {
            self.inline.push(m.ident.to_string());
            self.items(items);
            visit_mut::visit_item_mod_mut(self, m);
            self.inline.pop();
        }
    }

    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        self.retain(&mut b.stmts, stmt_attrs);
        visit_mut::visit_block_mut(self, b);
    }

    fn visit_item_impl_mut(&mut self, i: &mut syn::ItemImpl) {
        self.retain(&mut i.items, |x| match x {
            syn::ImplItem::Const(c) => &c.attrs,
            syn::ImplItem::Fn(f) => &f.attrs,
            syn::ImplItem::Type(t) => &t.attrs,
            syn::ImplItem::Macro(m) => &m.attrs,
            _ => &[],
        });
        visit_mut::visit_item_impl_mut(self, i);
    }

    fn visit_item_trait_mut(&mut self, t: &mut syn::ItemTrait) {
        self.retain(&mut t.items, |x| match x {
            syn::TraitItem::Const(c) => &c.attrs,
            syn::TraitItem::Fn(f) => &f.attrs,
            syn::TraitItem::Type(t) => &t.attrs,
            syn::TraitItem::Macro(m) => &m.attrs,
            _ => &[],
        });
        visit_mut::visit_item_trait_mut(self, t);
    }

    fn visit_item_foreign_mod_mut(&mut self, f: &mut syn::ItemForeignMod) {
        self.retain(&mut f.items, |x| match x {
            syn::ForeignItem::Fn(f) => &f.attrs,
            syn::ForeignItem::Static(s) => &s.attrs,
            syn::ForeignItem::Type(t) => &t.attrs,
            syn::ForeignItem::Macro(m) => &m.attrs,
            _ => &[],
        });
        visit_mut::visit_item_foreign_mod_mut(self, f);
    }

    fn visit_fields_named_mut(&mut self, f: &mut syn::FieldsNamed) {
        self.retain_punct(&mut f.named, |x| &x.attrs);
        visit_mut::visit_fields_named_mut(self, f);
    }

    fn visit_fields_unnamed_mut(&mut self, f: &mut syn::FieldsUnnamed) {
        self.retain_punct(&mut f.unnamed, |x| &x.attrs);
        visit_mut::visit_fields_unnamed_mut(self, f);
    }

    fn visit_item_enum_mut(&mut self, e: &mut syn::ItemEnum) {
        self.retain_punct(&mut e.variants, |x| &x.attrs);
        visit_mut::visit_item_enum_mut(self, e);
    }

    fn visit_expr_match_mut(&mut self, m: &mut syn::ExprMatch) {
        self.retain(&mut m.arms, |x| &x.attrs);
        visit_mut::visit_expr_match_mut(self, m);
    }

    fn visit_expr_struct_mut(&mut self, s: &mut syn::ExprStruct) {
        self.retain_punct(&mut s.fields, |x| &x.attrs);
        visit_mut::visit_expr_struct_mut(self, s);
    }
}

/// The `#[path = ".."]` of a module declaration.
fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn stmt_attrs(stmt: &syn::Stmt) -> &[Attribute] {
    match stmt {
        syn::Stmt::Local(l) => &l.attrs,
        syn::Stmt::Item(i) => item_attrs(i),
        syn::Stmt::Macro(m) => &m.attrs,
        syn::Stmt::Expr(e, _) => expr_attrs(e),
    }
}

/// The outer attributes of the expression kinds that start statements.
fn expr_attrs(e: &Expr) -> &[Attribute] {
    match e {
        Expr::Assign(x) => &x.attrs,
        Expr::Block(x) => &x.attrs,
        Expr::Call(x) => &x.attrs,
        Expr::ForLoop(x) => &x.attrs,
        Expr::If(x) => &x.attrs,
        Expr::Loop(x) => &x.attrs,
        Expr::Macro(x) => &x.attrs,
        Expr::Match(x) => &x.attrs,
        Expr::MethodCall(x) => &x.attrs,
        Expr::Return(x) => &x.attrs,
        Expr::Unsafe(x) => &x.attrs,
        Expr::While(x) => &x.attrs,
        _ => &[],
    }
}

/// Every out-of-line module a file declares (for a file that is compiled out as a whole: its
/// modules are out too, for the same reason).
pub fn out_of_line_mods(file: &syn::File, why: Off) -> Vec<RemovedMod> {
    fn walk(items: &[Item], inline: &mut Vec<String>, why: Off, out: &mut Vec<RemovedMod>) {
        for item in items {
            let Item::Mod(m) = item else { continue };
            match &m.content {
                Some((_, inner)) => {
                    inline.push(m.ident.to_string());
                    walk(inner, inline, why, out);
                    inline.pop();
                }
                None => out.push(RemovedMod {
                    inline: inline.clone(),
                    name: m.ident.to_string(),
                    path: path_attr(&m.attrs),
                    why,
                }),
            }
        }
    }
    let mut out = Vec::new();
    walk(&file.items, &mut Vec::new(), why, &mut out);
    out
}

/// Which lines of `text` the removed pieces cover, by 0-based line index: a line is removed
/// when all its code lies inside one removed piece (text before the piece on its first line,
/// or after it on its last, other than whitespace, a separator and a `//` comment, keeps the
/// line).
pub fn removed_lines(text: &str, removed: &[Removed]) -> Vec<Option<Off>> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = vec![None; lines.len()];
    for r in removed {
        let (first, last) = (r.start.0.saturating_sub(1), r.end.0.saturating_sub(1));
        for (i, slot) in out.iter_mut().enumerate().take(last + 1).skip(first) {
            let line = lines.get(i).copied().unwrap_or("");
            let before: String = if i == first {
                line.chars().take(r.start.1).collect()
            } else {
                String::new()
            };
            let after: String = if i == last {
                line.chars().skip(r.end.1).collect()
            } else {
                String::new()
            };
            // The separator after a removed field, variant or argument goes with it.
            let after = after.trim().trim_start_matches([',', ';']).trim();
            if before.trim().is_empty() && (after.is_empty() || after.starts_with("//")) {
                *slot = Some(r.why.max(slot.unwrap_or(r.why)));
            }
        }
    }
    out
}

/// A file's lines split by what the build made of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Compiled in.
    pub kept: Lines,
    /// Test code.
    pub test: Lines,
    /// Compiled out by another cfg.
    pub off: Lines,
}

impl Split {
    /// Every line of a file counted as `why`.
    pub fn all(kinds: &[Kind], why: Option<Off>) -> Split {
        let mut s = Split::default();
        for &k in kinds {
            s.bucket(why).add(k);
        }
        s
    }

    /// Splits the lines of `text` (kinds from [`super::count::rust_lines`]).
    pub fn of(text: &str, kinds: &[Kind], stripped: &Stripped) -> Split {
        if stripped.whole_file.is_some() {
            return Split::all(kinds, stripped.whole_file);
        }
        let removed = removed_lines(text, &stripped.removed);
        let mut s = Split::default();
        for (i, &k) in kinds.iter().enumerate() {
            s.bucket(removed.get(i).copied().flatten()).add(k);
        }
        s
    }

    fn bucket(&mut self, why: Option<Off>) -> &mut Lines {
        match why {
            None => &mut self.kept,
            Some(Off::Test) => &mut self.test,
            Some(Off::Cfg) => &mut self.off,
        }
    }
}

/// The file a removed `mod` declaration in `file` names, by the rules rustc uses: a crate root
/// or `mod.rs` (`dir_owner`) looks for modules beside itself, another file in the directory
/// named after it; `#[path]` is relative to the file's directory (or, inside inline modules,
/// to their directory). `None` if neither candidate exists.
pub fn mod_file(file: &Path, dir_owner: bool, m: &RemovedMod) -> Option<PathBuf> {
    let parent = file.parent()?;
    let own_dir = || match file.file_stem() {
        Some(stem) if !dir_owner => parent.join(stem),
        _ => parent.to_path_buf(),
    };
    let candidates = match &m.path {
        Some(p) if m.inline.is_empty() => vec![parent.join(p)],
        Some(p) => vec![m.inline.iter().fold(own_dir(), |d, i| d.join(i)).join(p)],
        None => {
            let dir = m.inline.iter().fold(own_dir(), |d, i| d.join(i));
            vec![
                dir.join(format!("{}.rs", m.name)),
                dir.join(&m.name).join("mod.rs"),
            ]
        }
    };
    candidates.into_iter().find(|c| c.is_file())
}

/// Whether a file owns its directory for module lookup: `mod.rs`, `lib.rs`, `main.rs`.
pub fn owns_dir(file: &Path) -> bool {
    matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("mod.rs" | "lib.rs" | "main.rs")
    )
}

#[cfg(test)]
#[path = "strip_tests.rs"]
mod tests;
