//! The rules an input must follow, one function each, with the reason for the rule.
//! Each records its errors in the [`Ctxt`] and returns, so that all are reported at once.

use std::fmt::Display;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens as _;
use syn::{Data, DataEnum, DeriveInput, GenericParam};

use crate::ast::{Protocol, Variant};
use crate::attr::{self, SerdeAttrs};
use crate::ctxt::Ctxt;

/// Runs every rule on an enum.
pub(crate) fn check(cx: &Ctxt, protocol: &Protocol<'_>) {
    no_generics(cx, protocol);
    has_variants(cx, protocol);
    unique_method_names(cx, protocol);
    client_method_names(cx, protocol);
    reply_only_on_variants(cx, protocol);
    added_at_the_end(cx, protocol);
    no_self_in_replies(cx, protocol);
    no_cfg_on_fields(cx, protocol);
    externally_tagged(cx, protocol);
    no_untagged_variants(cx, protocol);
    no_other_variant(cx, protocol);
    no_skipped_variants(cx, protocol);
    no_flatten(cx, protocol);
    no_skip_serializing_if(cx, protocol);
    skips_on_both_sides(cx, protocol);
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

/// Each variant also gets a method on the generated client, named after the variant in
/// snake_case: the name must be one that a method can have, must not be one of the
/// client's own methods, and must not be the `try_` method of a call variant (`TrySquare`
/// next to a call `Square`). Methods of `Sender` that a variant's method would hide
/// (`send`, `closed`, …) are not errors: they stay reachable through `sender()`, and
/// rejecting them would reject protocols with variants such as `Ready` or `Closed`.
fn client_method_names(cx: &Ctxt, protocol: &Protocol<'_>) {
    // A variant whose handler method collides has been reported; its client method would
    // collide too.
    let variants = protocol
        .variants
        .iter()
        .filter(|v| v.method_taken_by.is_none());
    for variant in variants {
        if let Some(msg) = client_method_problem(protocol, variant) {
            cx.error_spanned_by(variant.ident, msg);
        }
    }
}

/// The client's own methods, which no variant's method may take.
const CLIENT_METHODS: &[&str] = &["new", "sender", "into_sender"];

/// Whether the client gets a method for `variant`. Not for a variant with an error above
/// (or a colliding handler method), so that rustc adds no second error for it.
pub(crate) fn has_client_method(protocol: &Protocol<'_>, variant: &Variant<'_>) -> bool {
    variant.method_taken_by.is_none() && client_method_problem(protocol, variant).is_none()
}

/// What is wrong with the client method of `variant`, if anything.
fn client_method_problem(protocol: &Protocol<'_>, variant: &Variant<'_>) -> Option<String> {
    let variant_name = syn::ext::IdentExt::unraw(variant.ident);
    let client = format!("{}Client", protocol.name());
    let Some(method) = &variant.client_method else {
        let snake = crate::case::to_snake_case(&variant_name.to_string());
        return Some(if snake.is_empty() {
            format!(
                "variant `{variant_name}` gives the client an empty method name; rename the variant"
            )
        } else {
            format!(
                "variant `{variant_name}` gives the client the method name `{snake}`, which a method cannot have; rename the variant"
            )
        });
    };
    let method = syn::ext::IdentExt::unraw(method).to_string();
    if CLIENT_METHODS.contains(&method.as_str()) {
        return Some(format!(
            "method name conflicts with generated fn `{client}::{method}`; rename the variant"
        ));
    }
    // A call's `try_` and `_stream` forms, which no other variant's method may take.
    let derived = |form: &str| {
        protocol.variants.iter().find(|other| {
            other.reply.is_some()
                && other.method_taken_by.is_none()
                && other.client_method.as_ref().is_some_and(|other| {
                    form.replace('*', &syn::ext::IdentExt::unraw(other).to_string()) == method
                })
        })
    };
    if let Some(call) = derived("try_*") {
        return Some(format!(
            "method name conflicts with generated fn `{client}::{method}`, the form of call `{}::{}` that does not wait; rename one of the variants",
            protocol.name(),
            syn::ext::IdentExt::unraw(call.ident),
        ));
    }
    if let Some(call) = derived("*_stream") {
        return Some(format!(
            "method name conflicts with generated fn `{client}::{method}`, the stream of calls `{}::{}`; rename one of the variants",
            protocol.name(),
            syn::ext::IdentExt::unraw(call.ident),
        ));
    }
    // A call's own forms against an earlier call's (`TrySquare`'s stream and
    // `SquareStream`'s `try_`, say).
    variant.reply.as_ref()?;
    let forms = |m: &str| [format!("try_{m}"), format!("{m}_stream")];
    let own = forms(&method);
    let earlier = protocol
        .variants
        .iter()
        .take_while(|other| !std::ptr::eq(*other, variant))
        .filter(|other| other.reply.is_some() && other.method_taken_by.is_none())
        .find_map(|other| {
            let theirs =
                forms(&syn::ext::IdentExt::unraw(other.client_method.as_ref()?).to_string());
            own.iter()
                .find(|form| theirs.contains(form))
                .map(|form| (other, form.clone()))
        });
    let (other, form) = earlier?;
    Some(format!(
        "the generated fn `{client}::{form}` of this call is also generated for the call `{}::{}`; rename one of the variants",
        protocol.name(),
        syn::ext::IdentExt::unraw(other.ident),
    ))
}

/// `#[reply(T)]` says what the peer answers a variant with, so it belongs on a variant:
/// on the enum it would say the same of every message, and a field is not answered. It is
/// not a real attribute, so the emitted enum leaves it out wherever it is and rustc adds
/// no "cannot find attribute" error.
fn reply_only_on_variants(cx: &Ctxt, protocol: &Protocol<'_>) {
    for attr in protocol.attrs.iter().filter(|attr| attr::is_reply(attr)) {
        cx.error_spanned_by(
            attr,
            "#[reply] on a #[aiosock::protocol] enum is not supported; put #[reply(T)] on each variant that the peer answers with a `T`",
        );
    }
    for field in protocol.variants.iter().flat_map(|v| &v.fields) {
        for attr in field
            .original
            .attrs
            .iter()
            .filter(|attr| attr::is_reply(attr))
        {
            cx.error_spanned_by(
                attr,
                "#[reply] on a field of a #[aiosock::protocol] enum is not supported; put it on the variant, as in `#[reply(u64)] Square(u64)`",
            );
        }
    }
}

/// `#[added]` marks a variant that a peer built from an earlier version of the enum may not
/// know. Variants travel by position, so an older peer knows a prefix of them: new
/// variants can only go at the end, and once one is marked added, every later one is too.
/// On the enum or a field it would mean nothing.
fn added_at_the_end(cx: &Ctxt, protocol: &Protocol<'_>) {
    let mut first_added: Option<&Variant<'_>> = None;
    for variant in &protocol.variants {
        match first_added {
            None if variant.added => first_added = Some(variant),
            Some(added) if !variant.added => cx.error_spanned_by(
                variant.ident,
                format_args!(
                    "variant `{}` must be marked #[added] too: it comes after `{}`, which is, and variants added to a protocol go at its end",
                    syn::ext::IdentExt::unraw(variant.ident),
                    syn::ext::IdentExt::unraw(added.ident),
                ),
            ),
            _ => {}
        }
    }
    for attr in protocol.attrs.iter().filter(|attr| attr::is_added(attr)) {
        cx.error_spanned_by(
            attr,
            "#[added] on a #[aiosock::protocol] enum is not supported; put it on each variant added after the protocol's first version",
        );
    }
    for field in protocol.variants.iter().flat_map(|v| &v.fields) {
        for attr in field
            .original
            .attrs
            .iter()
            .filter(|attr| attr::is_added(attr))
        {
            cx.error_spanned_by(
                attr,
                "#[added] on a field is not supported: add a variant instead, at the end of the enum, marked #[added]",
            );
        }
    }
}

/// The reply type is written again in the handler trait, where `Self` is the handler, and
/// in the client, where it is the client: `Self` in it would name a different type in each
/// place (and none in the check that it is a serde type).
fn no_self_in_replies(cx: &Ctxt, protocol: &Protocol<'_>) {
    fn find_self(tokens: TokenStream) -> Option<TokenTree> {
        tokens.into_iter().find_map(|token| match token {
            TokenTree::Ident(ref ident) if ident == "Self" => Some(token),
            TokenTree::Group(group) => find_self(group.stream()),
            _ => None,
        })
    }
    // The IR's reply types have `Self` replaced already: look at the attributes.
    let attrs = protocol.variants.iter().flat_map(|v| &v.original.attrs);
    for attr in attrs.filter(|attr| attr::is_reply(attr)) {
        if let Some(token) = find_self(attr.meta.to_token_stream()) {
            cx.error_spanned_by(
                token,
                format_args!(
                    "`Self` in #[reply(...)] is not supported: the reply type is also written in the handler trait and the client, where `Self` is another type; write `{}`",
                    protocol.name(),
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

// The serde rules. aiosock encodes a message with bincode through serde: positional (no
// field or variant names are written, a variant is its index), no `deserialize_any`, and
// sequences and maps must know their length up front. Serde attributes that need more
// than that are rejected here, where the macro can see them: on the enum, its variants
// and their fields. Without these rules they fail only at run time, when a message is
// sent (an encode error) or received (a decode error, or a wrong value). Keys that are
// not rejected are left alone; serde_derive reports the ones it does not know.

/// `untagged`, `tag = "..."` (internally tagged) and `tag = "...", content = "..."`
/// (adjacently tagged) on the enum: serde decodes these representations through
/// `deserialize_any`, which needs a self-describing format. bincode has none, so every
/// message would fail to decode. The default, externally tagged, sends the variant's index.
fn externally_tagged(cx: &Ctxt, protocol: &Protocol<'_>) {
    let serde = &protocol.serde;
    reject(
        cx,
        serde,
        "untagged",
        "#[serde(untagged)] is not supported on a #[aiosock::protocol] enum: untagged enums need a self-describing format and aiosock encodes with bincode; remove it (each message is sent as its variant's index and fields)",
    );
    if serde.has("tag") {
        if serde.has("content") {
            cx.error_spanned_by(
                serde.tokens_of(&["tag", "content"]),
                "#[serde(tag = \"...\", content = \"...\")] is not supported on a #[aiosock::protocol] enum: adjacently tagged enums need a self-describing format and aiosock encodes with bincode; remove both (each message is sent as its variant's index and fields)",
            );
        } else {
            cx.error_spanned_by(
                serde.tokens_of(&["tag"]),
                "#[serde(tag = \"...\")] is not supported on a #[aiosock::protocol] enum: internally tagged enums need a self-describing format and aiosock encodes with bincode; remove it (each message is sent as its variant's index and fields)",
            );
        }
    }
}

/// `untagged` on a variant: serde decodes the whole enum by first trying the tagged
/// variants and then the untagged ones, through `deserialize_any`, which bincode does not
/// support, so every message of the enum would fail to decode, not only that variant's.
fn no_untagged_variants(cx: &Ctxt, protocol: &Protocol<'_>) {
    for variant in &protocol.variants {
        reject(
            cx,
            &variant.serde,
            "untagged",
            "#[serde(untagged)] is not supported on a variant of a #[aiosock::protocol] enum: untagged variants need a self-describing format and aiosock encodes with bincode; remove it",
        );
    }
}

/// `other` on a variant catches a tag the enum does not know. bincode's tag is the
/// variant's index: an unknown one would be caught, but its fields would be left unread,
/// so the frame still fails to decode (with bytes left over). And the hello already
/// refuses a peer whose enum has other variants, so `other` could never help.
fn no_other_variant(cx: &Ctxt, protocol: &Protocol<'_>) {
    for variant in &protocol.variants {
        reject(
            cx,
            &variant.serde,
            "other",
            "#[serde(other)] is not supported on a variant of a #[aiosock::protocol] enum: bincode sends a variant as its index, so an unknown variant's fields would be left unread, and the hello already refuses a peer whose enum differs; remove it",
        );
    }
}

/// `skip` or `skip_deserializing` on a variant: serde writes each variant's index among
/// all variants, but reads it as an index among the variants it deserializes. Every
/// variant after a skipped one would be received as the one after it (with the same
/// field types, silently), or fail to decode.
fn no_skipped_variants(cx: &Ctxt, protocol: &Protocol<'_>) {
    for variant in &protocol.variants {
        for key in ["skip", "skip_deserializing"] {
            reject(
                cx,
                &variant.serde,
                key,
                format_args!(
                    "#[serde({key})] is not supported on a variant of a #[aiosock::protocol] enum: serde reads the variants after a skipped one at the wrong index, so each would be received as the next one; remove the variant instead"
                ),
            );
        }
    }
}

/// `flatten` on a field: serde writes the enclosing fields as a map whose length it does
/// not know up front, and bincode needs the length before the entries, so every message
/// of that variant would fail to encode.
fn no_flatten(cx: &Ctxt, protocol: &Protocol<'_>) {
    for field in protocol.variants.iter().flat_map(|v| &v.fields) {
        reject(
            cx,
            &field.serde,
            "flatten",
            "#[serde(flatten)] is not supported on a field of a #[aiosock::protocol] enum: a flattened field is written as a map of unknown length, which bincode cannot encode; remove it and keep the field nested",
        );
    }
}

/// `skip_serializing_if` on a field that is otherwise written: bincode writes no field
/// names, so the receiver cannot tell that a field was left out and reads the next
/// field's bytes in its place. (With `skip` or `skip_serializing` the field is never
/// written and the predicate does nothing; `skips_on_both_sides` checks those.)
fn no_skip_serializing_if(cx: &Ctxt, protocol: &Protocol<'_>) {
    for field in protocol.variants.iter().flat_map(|v| &v.fields) {
        let serde = &field.serde;
        if serde.has("skip") || serde.has("skip_serializing") {
            continue;
        }
        reject(
            cx,
            serde,
            "skip_serializing_if",
            "#[serde(skip_serializing_if = \"...\")] is not supported on a field of a #[aiosock::protocol] enum: bincode reads fields by position, so a field left out of some messages would shift the fields after it; remove it (an `Option` that is `None` takes one byte)",
        );
    }
}

/// `skip_serializing` without `skip_deserializing`, or the reverse: bincode reads fields
/// by position, so a field written by the sender must be read by the receiver and the
/// other way round, or every later field is read from the wrong bytes. `skip` leaves a
/// field out on both sides (it is filled with its `Default` on receipt).
fn skips_on_both_sides(cx: &Ctxt, protocol: &Protocol<'_>) {
    for field in protocol.variants.iter().flat_map(|v| &v.fields) {
        let serde = &field.serde;
        if serde.has("skip") {
            continue;
        }
        match (serde.get("skip_serializing"), serde.get("skip_deserializing")) {
            (Some(skip), None) => cx.error_spanned_by(
                &skip.tokens,
                "#[serde(skip_serializing)] without `skip_deserializing` is not supported on a field of a #[aiosock::protocol] enum: bincode reads fields by position, so the receiver would read the next field's bytes in its place; use #[serde(skip)] to leave the field out on both sides",
            ),
            (None, Some(skip)) => cx.error_spanned_by(
                &skip.tokens,
                "#[serde(skip_deserializing)] without `skip_serializing` is not supported on a field of a #[aiosock::protocol] enum: bincode reads fields by position, so the receiver would read this field's bytes as the next field; use #[serde(skip)] to leave the field out on both sides",
            ),
            _ => {}
        }
    }
}

/// Records `msg` at the serde key `key` (and its value), if `serde` has it.
fn reject(cx: &Ctxt, serde: &SerdeAttrs, key: &str, msg: impl Display) {
    if let Some(found) = serde.get(key) {
        cx.error_spanned_by(&found.tokens, msg);
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
    fn reply_on_the_enum_or_a_field_is_rejected() {
        assert_eq!(
            errors(
                quote!(),
                quote! { #[reply(u64)] enum E { A(#[reply(u8)] u8), B { #[reply] b: u8 } } }
            ),
            [
                "#[reply] on a #[aiosock::protocol] enum is not supported; put #[reply(T)] on each variant that the peer answers with a `T`",
                "#[reply] on a field of a #[aiosock::protocol] enum is not supported; put it on the variant, as in `#[reply(u64)] Square(u64)`",
                "#[reply] on a field of a #[aiosock::protocol] enum is not supported; put it on the variant, as in `#[reply(u64)] Square(u64)`",
            ]
        );
    }

    #[test]
    fn added_variants_go_at_the_end_and_only_on_variants() {
        assert!(
            errors(
                quote!(),
                quote! { enum E { A, #[added] B, #[added] C(u8) } }
            )
            .is_empty()
        );
        assert_eq!(
            errors(
                quote!(),
                quote! { #[added] enum E { A, #[added] B, C(#[added] u8), #[added(2)] #[added] D } }
            ),
            [
                "#[added] takes no arguments; write `#[added]` on each variant added after the protocol's first version",
                "duplicate #[added] on variant `D`",
                "variant `C` must be marked #[added] too: it comes after `B`, which is, and variants added to a protocol go at its end",
                "#[added] on a #[aiosock::protocol] enum is not supported; put it on each variant added after the protocol's first version",
                "#[added] on a field is not supported: add a variant instead, at the end of the enum, marked #[added]",
            ]
        );
    }

    #[test]
    fn reply_on_variants_is_accepted() {
        assert!(
            errors(
                quote!(),
                quote! {
                    enum E {
                        #[reply(u64)] A(u64),
                        #[reply(Result<Vec<String>, ::std::io::ErrorKind>)] B { x: u8 },
                        #[reply(())] C,
                        D,
                    }
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn self_in_a_reply_type_is_rejected() {
        let expected = "`Self` in #[reply(...)] is not supported: the reply type is also written in the handler trait and the client, where `Self` is another type; write `E`";
        assert_eq!(
            errors(quote!(), quote! { enum E { #[reply(Self)] A } }),
            [expected]
        );
        assert_eq!(
            errors(
                quote!(),
                quote! { enum E { #[reply(Vec<(u8, Option<Self>)>)] A } }
            ),
            [expected]
        );
        assert!(
            errors(
                quote!(),
                quote! { enum E { #[reply(E)] A, #[reply(SelfMade)] B } }
            )
            .is_empty()
        );
    }

    #[test]
    fn client_method_names_that_cannot_be_generated_are_rejected() {
        assert_eq!(
            errors(
                quote!(),
                quote! { enum Foo { New, Sender(u8), r#IntoSender { x: u8 }, Self_, Super, Crate, __, _1 } }
            ),
            [
                "method name conflicts with generated fn `FooClient::new`; rename the variant",
                "method name conflicts with generated fn `FooClient::sender`; rename the variant",
                "method name conflicts with generated fn `FooClient::into_sender`; rename the variant",
                "variant `Self_` gives the client the method name `self`, which a method cannot have; rename the variant",
                "variant `Super` gives the client the method name `super`, which a method cannot have; rename the variant",
                "variant `Crate` gives the client the method name `crate`, which a method cannot have; rename the variant",
                "variant `__` gives the client an empty method name; rename the variant",
                "variant `_1` gives the client the method name `1`, which a method cannot have; rename the variant",
            ]
        );
    }

    #[test]
    fn client_method_named_like_the_try_form_of_a_call_is_rejected() {
        let expected = [
            "method name conflicts with generated fn `FooClient::try_square`, the form of call `Foo::Square` that does not wait; rename one of the variants",
        ];
        // Either order.
        assert_eq!(
            errors(
                quote!(),
                quote! { enum Foo { #[reply(u8)] Square, TrySquare(u8) } }
            ),
            expected
        );
        assert_eq!(
            errors(
                quote!(),
                quote! { enum Foo { TrySquare(u8), #[reply(u8)] Square } }
            ),
            expected
        );
        // A call too.
        assert_eq!(
            errors(
                quote!(),
                quote! { enum Foo { #[reply(u8)] Square, #[reply(u8)] Try_Square } }
            ),
            [
                "method name conflicts with generated fn `FooClient::try_square`, the form of call `Foo::Square` that does not wait; rename one of the variants",
            ]
        );
        // A one-way variant has no `try_` method.
        assert!(errors(quote!(), quote! { enum Foo { Square, TrySquare(u8) } }).is_empty());
        // Methods of `Sender` reached through `Deref` may be hidden.
        assert!(
            errors(
                quote!(),
                quote! { enum Foo { Send, TrySend, Closed, Ready, Flush } }
            )
            .is_empty()
        );
    }

    #[test]
    fn colliding_variants_are_reported_once() {
        // `NEW` collides with `New` in the handler and would in the client: one error.
        assert_eq!(
            errors(quote!(), quote! { enum Foo { New, NEW } }),
            [
                "variant `NEW` needs the handler method `on_new`, which variant `New` already has; rename one of them",
                "method name conflicts with generated fn `FooClient::new`; rename the variant",
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
    fn serde_representations_that_need_deserialize_any_are_rejected() {
        let untagged = errors(quote!(), quote! { #[serde(untagged)] enum E { A(u8) } });
        assert_eq!(untagged.len(), 1, "{untagged:?}");
        assert!(
            untagged[0]
                .starts_with("#[serde(untagged)] is not supported on a #[aiosock::protocol] enum")
        );
        let internal = errors(
            quote!(),
            quote! { #[serde(tag = "t")] enum E { A { x: u8 } } },
        );
        assert_eq!(internal.len(), 1, "{internal:?}");
        assert!(internal[0].starts_with("#[serde(tag = \"...\")] is not supported"));
        // The tag and content may be split over two attributes: one error still.
        let adjacent = errors(
            quote!(),
            quote! { #[serde(tag = "t")] #[serde(rename_all = "lowercase", content = "c")] enum E { A(u8) } },
        );
        assert_eq!(adjacent.len(), 1, "{adjacent:?}");
        assert!(
            adjacent[0].starts_with("#[serde(tag = \"...\", content = \"...\")] is not supported")
        );
        let variant = errors(
            quote!(),
            quote! { enum E { A(u8), #[serde(untagged)] B(String) } },
        );
        assert_eq!(variant.len(), 1, "{variant:?}");
        assert!(variant[0].starts_with("#[serde(untagged)] is not supported on a variant"));
    }

    #[test]
    fn serde_variant_attributes_that_shift_or_catch_indices_are_rejected() {
        let errors = errors(
            quote!(),
            quote! {
                enum E {
                    A(u8),
                    #[serde(skip)] B,
                    #[serde(rename = "c", skip_deserializing)] C(u8),
                    // Only sending it fails (an encode error); the indices stay right.
                    #[serde(skip_serializing)] D(u8),
                    #[serde(other)] E,
                }
            },
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("#[serde(other)] is not supported on a variant"));
        assert!(errors[1].starts_with("#[serde(skip)] is not supported on a variant"));
        assert!(
            errors[2].starts_with("#[serde(skip_deserializing)] is not supported on a variant")
        );
    }

    #[test]
    fn serde_field_attributes_that_desynchronise_fields_are_rejected() {
        let errors = errors(
            quote!(),
            quote! {
                enum E {
                    A {
                        #[serde(flatten)] a: Inner,
                        #[serde(skip_serializing_if = "Option::is_none")] b: Option<u8>,
                        #[serde(skip_serializing)] c: u8,
                        #[serde(skip_deserializing)] d: u8,
                        #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)] e: Option<u8>,
                    },
                    B(#[serde(skip_serializing)] u8, u8),
                }
            },
        );
        let starts: Vec<_> = errors
            .iter()
            .map(|e| e.split(" is not supported").next().unwrap())
            .collect();
        assert_eq!(
            starts,
            [
                "#[serde(flatten)]",
                "#[serde(skip_serializing_if = \"...\")]",
                "#[serde(skip_serializing_if = \"...\")]",
                "#[serde(skip_serializing)] without `skip_deserializing`",
                "#[serde(skip_deserializing)] without `skip_serializing`",
                "#[serde(skip_deserializing)] without `skip_serializing`",
                "#[serde(skip_serializing)] without `skip_deserializing`",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn serde_attributes_bincode_can_carry_are_allowed() {
        assert_eq!(
            errors(
                quote!(),
                quote! {
                    #[serde(rename_all = "snake_case", deny_unknown_fields, bound = "")]
                    #[serde(expecting = "a message", crate = "x")]
                    enum E {
                        #[serde(rename = "a", alias = "aa")]
                        A {
                            #[serde(skip)] a: u8,
                            #[serde(skip_serializing, skip_deserializing)] b: u8,
                            #[serde(skip, skip_serializing_if = "is_zero")] c: u8,
                            #[serde(default, rename(serialize = "x", deserialize = "y"))] d: u8,
                            #[serde(with = "m")] e: u8,
                            #[serde(serialize_with = "s", deserialize_with = "d")] f: u8,
                        },
                        #[serde(skip_serializing, borrow)]
                        B(#[serde(default = "path::to::f")] u8),
                        // Not serde's: left for serde_derive to report.
                        #[serde(no_such_key = 1, also(nested, ones))]
                        C(#[serde] u8, #[serde = "x"] u8),
                    }
                }
            ),
            Vec::<String>::new()
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
