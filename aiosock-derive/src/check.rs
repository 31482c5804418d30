//! The rules an input must follow, one function each, with the reason for the rule.
//! Each records its errors in the [`Ctxt`] and returns, so that all are reported at once.

use proc_macro2::{TokenStream, TokenTree};
use syn::{Data, DataEnum, DeriveInput, GenericParam};

use crate::ast::Protocol;
use crate::ctxt::Ctxt;

/// Runs every rule on an enum.
pub(crate) fn check(cx: &Ctxt, protocol: &Protocol<'_>) {
    no_generics(cx, protocol);
    has_variants(cx, protocol);
    unique_method_names(cx, protocol);
    no_cfg_on_fields(cx, protocol);
}

/// Only an enum can be a protocol: each variant is one kind of message, and a struct has
/// no variants to dispatch on.
pub(crate) fn is_enum<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Option<&'a DataEnum> {
    match &input.data {
        Data::Enum(data) => Some(data),
        Data::Struct(data) => {
            cx.error_spanned_by(
                data.struct_token,
                "#[aiosock::protocol] can only be applied to an enum, not a struct; write each message as a variant of an enum",
            );
            None
        }
        Data::Union(data) => {
            cx.error_spanned_by(
                data.union_token,
                "#[aiosock::protocol] can only be applied to an enum, not a union",
            );
            None
        }
    }
}

/// The input did not parse as a struct, enum or union (a function, trait, module, …).
/// The error points at the item's keyword, after its attributes and visibility.
pub(crate) fn not_an_item(input: &TokenStream) -> Option<syn::Error> {
    let mut tokens = input.clone().into_iter().peekable();
    while let Some(token) = tokens.next() {
        match &token {
            // An attribute: `#` (maybe `!`) and a bracketed group.
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!') {
                    tokens.next();
                }
                tokens.next();
            }
            // A visibility: `pub`, maybe followed by `(crate)` and such.
            TokenTree::Ident(ident) if ident == "pub" => {
                if matches!(tokens.peek(), Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Parenthesis)
                {
                    tokens.next();
                }
            }
            TokenTree::Ident(ident) if ident == "enum" => return None,
            _ => {
                return Some(syn::Error::new_spanned(
                    token,
                    "#[aiosock::protocol] can only be applied to an enum",
                ));
            }
        }
    }
    None
}

/// Generic parameters are rejected: the handler trait and the fingerprint need concrete
/// field types, and a message must be an owned `'static` value to cross a process
/// boundary.
fn no_generics(cx: &Ctxt, protocol: &Protocol<'_>) {
    let generics = protocol.generics;
    if !generics.params.is_empty() {
        let only_lifetimes = generics
            .params
            .iter()
            .all(|param| matches!(param, GenericParam::Lifetime(_)));
        let msg = if only_lifetimes {
            "lifetime parameters are not supported on a #[aiosock::protocol] enum: a message is decoded into an owned value, so use owned fields such as `String` instead of `&str`"
        } else {
            "generic parameters are not supported on a #[aiosock::protocol] enum: the handler trait and the protocol fingerprint need concrete field types"
        };
        cx.error_spanned_by(generics, msg);
    }
    if let Some(where_clause) = &generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "a where clause is not supported on a #[aiosock::protocol] enum",
        );
    }
}

/// An enum without variants has no message that could be sent, which is surely a
/// mistake: its channel could only be closed.
fn has_variants(cx: &Ctxt, protocol: &Protocol<'_>) {
    if protocol.variants.is_empty() {
        cx.error_spanned_by(
            protocol.ident,
            "a #[aiosock::protocol] enum needs at least one variant: each variant is a message that can be sent",
        );
    }
}

/// Each variant gets a handler method `on_<snake_case>`, so two variants whose names
/// differ only in case or underscores (`FooBar` and `Foo_Bar`) would need the same method.
/// The error points at the later one and names the first (the IR found them).
fn unique_method_names(cx: &Ctxt, protocol: &Protocol<'_>) {
    for variant in &protocol.variants {
        if let Some(first) = variant.method_taken_by {
            cx.error_spanned_by(
                variant.ident,
                format_args!(
                    "variant `{}` needs the handler method `{}`, which variant `{}` already has; rename one of them",
                    syn::ext::IdentExt::unraw(variant.ident),
                    variant.method,
                    syn::ext::IdentExt::unraw(first),
                ),
            );
        }
    }
}

/// A field behind `#[cfg]` would need a handler parameter behind the same `cfg`, and
/// shifts the positions of a tuple variant's later fields: put the `cfg` on the variant.
fn no_cfg_on_fields(cx: &Ctxt, protocol: &Protocol<'_>) {
    for variant in &protocol.variants {
        for field in &variant.fields {
            for attr in &field.original.attrs {
                if attr.path().is_ident("cfg") {
                    cx.error_spanned_by(
                        attr,
                        "#[cfg] on a field of a #[aiosock::protocol] enum is not supported; put it on the whole variant",
                    );
                }
            }
        }
    }
}

/// Whether the expansion can still emit the handler trait and the impls when there are
/// errors. With generics it cannot (the field types name parameters the trait lacks), so
/// only the user's item is emitted.
pub(crate) fn can_expand_anyway(protocol: &Protocol<'_>) -> bool {
    protocol.generics.params.is_empty() && protocol.generics.where_clause.is_none()
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::expand::expand;

    fn errors(args: TokenStream, input: TokenStream) -> Vec<String> {
        match expand(args, input).1 {
            Some(err) => err.into_iter().map(|e| e.to_string()).collect(),
            None => Vec::new(),
        }
    }

    #[test]
    fn valid_enums_have_no_errors() {
        assert!(errors(quote!(), quote! { enum A { B, C(u8), D { x: u8 } } }).is_empty());
        assert!(errors(quote!(), quote! { pub(crate) enum A { B = 1, C = 2 } }).is_empty());
        assert!(errors(quote!(), quote! { enum r#Match { r#type { r#type: u8 } } }).is_empty());
    }

    #[test]
    fn struct_union_and_other_items_are_rejected() {
        assert_eq!(
            errors(quote!(), quote! { #[derive(Debug)] pub struct S { x: u8 } }),
            [
                "#[aiosock::protocol] can only be applied to an enum, not a struct; write each message as a variant of an enum"
            ]
        );
        assert_eq!(
            errors(quote!(), quote! { union U { x: u8 } }),
            ["#[aiosock::protocol] can only be applied to an enum, not a union"]
        );
        for item in [
            quote! { pub fn f() {} },
            quote! { #[doc = "x"] pub(crate) trait T {} },
            quote! { mod m {} },
        ] {
            assert_eq!(
                errors(quote!(), item),
                ["#[aiosock::protocol] can only be applied to an enum"]
            );
        }
    }

    #[test]
    fn empty_enum_is_rejected() {
        assert_eq!(
            errors(quote!(), quote! { enum E {} }),
            [
                "a #[aiosock::protocol] enum needs at least one variant: each variant is a message that can be sent"
            ]
        );
    }

    #[test]
    fn generics_are_rejected() {
        assert_eq!(
            errors(quote!(), quote! { enum E<T> { A(T) } }),
            [
                "generic parameters are not supported on a #[aiosock::protocol] enum: the handler trait and the protocol fingerprint need concrete field types"
            ]
        );
        assert_eq!(
            errors(
                quote!(),
                quote! { enum E<'a, const N: usize> { A(&'a [u8; N]) } }
            ),
            [
                "generic parameters are not supported on a #[aiosock::protocol] enum: the handler trait and the protocol fingerprint need concrete field types"
            ]
        );
        assert_eq!(
            errors(quote!(), quote! { enum E<'a> { A(&'a str) } }),
            [
                "lifetime parameters are not supported on a #[aiosock::protocol] enum: a message is decoded into an owned value, so use owned fields such as `String` instead of `&str`"
            ]
        );
        assert_eq!(
            errors(quote!(), quote! { enum E where u8: Copy { A } }),
            ["a where clause is not supported on a #[aiosock::protocol] enum"]
        );
    }

    #[test]
    fn colliding_method_names_are_rejected() {
        assert_eq!(
            errors(
                quote!(),
                quote! { enum E { FooBar, Foo_Bar(u8), FOOBar, Other } }
            ),
            [
                "variant `Foo_Bar` needs the handler method `on_foo_bar`, which variant `FooBar` already has; rename one of them",
                "variant `FOOBar` needs the handler method `on_foo_bar`, which variant `FooBar` already has; rename one of them",
            ]
        );
        assert_eq!(
            errors(quote!(), quote! { enum E { r#Match, Match_ } }),
            [
                "variant `Match_` needs the handler method `on_match`, which variant `Match` already has; rename one of them"
            ]
        );
    }

    #[test]
    fn cfg_on_fields_is_rejected() {
        assert_eq!(
            errors(quote!(), quote! { enum E { A(#[cfg(unix)] u8) } }),
            [
                "#[cfg] on a field of a #[aiosock::protocol] enum is not supported; put it on the whole variant"
            ]
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let errors = errors(
            quote! { crate = "a", nope, crate = "b" },
            quote! { enum E<T> { FooBar(T), Foo_Bar } },
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("unknown #[aiosock::protocol] argument `nope`"));
        assert!(errors[1].starts_with("duplicate #[aiosock::protocol] argument `crate`"));
        assert!(errors[2].starts_with("generic parameters are not supported"));
        assert!(errors[3].starts_with("variant `Foo_Bar` needs the handler method `on_foo_bar`"));
    }
}
