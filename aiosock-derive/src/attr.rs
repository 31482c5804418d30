//! The arguments of `#[aiosock::protocol(...)]`, the `#[reply(T)]` attribute of a
//! variant, and the keys of the user's `#[serde(...)]` attributes.
//!
//! A malformed, unknown or duplicate argument records an error in the [`Ctxt`] and
//! parsing goes on with the next one, so that every mistake is reported in one build.
//! The one argument is `crate = "path"`, which mirrors serde's `#[serde(crate = "...")]`.
//! A malformed or repeated `#[reply]` is reported the same way (`check` reports one in the
//! wrong place, on the enum or a field).
//!
//! `#[serde(...)]` attributes are only read here, never judged: `check` rejects the keys
//! that bincode cannot carry, and everything else (unknown keys, malformed attributes) is
//! left to serde_derive, which reports it.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser as _};
use syn::{Attribute, LitStr, MacroDelimiter, Meta, Path, Token, Type};

use crate::ctxt::Ctxt;

/// What the arguments say.
pub(crate) struct Args {
    /// The path to the aiosock crate that generated code names, `::aiosock` by default.
    pub(crate) krate: Path,
    /// The span of the `"path"` literal if one was given: generated paths built from it
    /// point there when they do not resolve.
    pub(crate) krate_span: Span,
}

impl Args {
    pub(crate) fn parse(cx: &Ctxt, args: TokenStream) -> Self {
        let mut krate: Option<(Path, Span)> = None;
        let mut seen_crate = false;
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                if seen_crate {
                    cx.error_spanned_by(
                        &meta.path,
                        "duplicate #[aiosock::protocol] argument `crate`",
                    );
                }
                match parse_crate(&meta) {
                    Ok(value) if !seen_crate => krate = Some(value),
                    Ok(_) => {}
                    Err(err) => {
                        cx.syn_error(err);
                        skip_value(meta.input)?;
                    }
                }
                seen_crate = true;
            } else {
                cx.error_spanned_by(
                    &meta.path,
                    format_args!(
                        "unknown #[aiosock::protocol] argument `{}`; the only argument is `crate = \"...\"`",
                        path_to_string(&meta.path),
                    ),
                );
                skip_value(meta.input)?;
            }
            Ok(())
        });
        if let Err(err) = parser.parse2(args) {
            cx.syn_error(err);
        }
        let (krate, krate_span) =
            krate.unwrap_or_else(|| (syn::parse_quote!(::aiosock), Span::call_site()));
        Args { krate, krate_span }
    }
}

/// `crate = "path::to::aiosock"`.
fn parse_crate(meta: &ParseNestedMeta<'_>) -> syn::Result<(Path, Span)> {
    const EXPECTED: &str = "expected `crate = \"...\"` with the path to the aiosock crate, as in `crate = \"my_reexports::aiosock\"`";
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(EXPECTED));
    }
    let value = meta.value()?;
    if !value.peek(LitStr) {
        return Err(value.error(EXPECTED));
    }
    let lit: LitStr = value.parse()?;
    let path = lit.parse::<Path>().map_err(|err| {
        syn::Error::new(
            lit.span(),
            format_args!("`crate` must be a path such as \"my_reexports::aiosock\": {err}"),
        )
    })?;
    Ok((path, lit.span()))
}

/// Whether `attr` is an `#[added]`, the macro's own attribute for variants added to a
/// protocol after its first version (see `check::added_at_the_end`). It is not a real
/// attribute either: the macro removes every one from the enum it emits.
pub(crate) fn is_added(attr: &Attribute) -> bool {
    attr.path().is_ident("added")
}

/// Whether a variant is marked `#[added]`. One with arguments (`#[added(2)]`,
/// `#[added = "v2"]`) or a second one records an error; the variant still counts as added.
pub(crate) fn added(cx: &Ctxt, variant: &syn::Variant) -> bool {
    let mut seen = false;
    for attr in variant.attrs.iter().filter(|attr| is_added(attr)) {
        if seen {
            cx.error_spanned_by(
                attr,
                format_args!(
                    "duplicate #[added] on variant `{}`",
                    syn::ext::IdentExt::unraw(&variant.ident),
                ),
            );
        } else if !matches!(attr.meta, Meta::Path(_)) {
            cx.error_spanned_by(
                attr,
                "#[added] takes no arguments; write `#[added]` on each variant added after the protocol's first version",
            );
        }
        seen = true;
    }
    seen
}

/// Whether `attr` is a `#[reply(...)]`, the macro's own attribute. It is not a real
/// attribute: the macro removes every one from the enum it emits.
pub(crate) fn is_reply(attr: &Attribute) -> bool {
    attr.path().is_ident("reply")
}

/// The reply type of a variant, from its `#[reply(T)]`; `None` for a one-way variant.
///
/// A malformed `#[reply]` records an error and the variant is read as one-way; a second
/// `#[reply]` records an error and is otherwise ignored.
pub(crate) fn reply(cx: &Ctxt, variant: &syn::Variant) -> Option<Type> {
    let mut reply = None;
    let mut seen = false;
    for attr in variant.attrs.iter().filter(|attr| is_reply(attr)) {
        if seen {
            cx.error_spanned_by(
                attr,
                format_args!(
                    "duplicate #[reply] on variant `{}`; a call has one reply type",
                    syn::ext::IdentExt::unraw(&variant.ident),
                ),
            );
            continue;
        }
        seen = true;
        match parse_reply(attr) {
            Ok(ty) => reply = Some(ty),
            Err(err) => cx.syn_error(err),
        }
    }
    reply
}

/// `#[reply(T)]`: exactly one type in parentheses.
fn parse_reply(attr: &Attribute) -> syn::Result<Type> {
    const EXPECTED: &str =
        "expected #[reply(T)] with the type that the call is answered with, as in `#[reply(u64)]`";
    let list = match &attr.meta {
        Meta::List(list)
            if matches!(list.delimiter, MacroDelimiter::Paren(_)) && !list.tokens.is_empty() =>
        {
            list
        }
        _ => return Err(syn::Error::new_spanned(attr, EXPECTED)),
    };
    list.parse_args_with(|input: ParseStream<'_>| {
        let ty: Type = input.parse().map_err(|err| {
            syn::Error::new(
                err.span(),
                "#[reply(...)] must hold a type, as in `#[reply(u64)]` or `#[reply(Result<u64, MyError>)]`",
            )
        })?;
        if input.is_empty() {
            return Ok(ty);
        }
        let several = input.peek(Token![,]);
        let rest: TokenStream = input.parse()?;
        Err(syn::Error::new_spanned(
            rest,
            if several {
                "#[reply(...)] takes one type; to answer with several values, reply with a tuple or a struct, as in `#[reply((u64, u32))]`"
            } else {
                "#[reply(...)] must hold a type, as in `#[reply(u64)]` or `#[reply(Result<u64, MyError>)]`"
            },
        ))
    })
}

/// The top-level keys of an item's `#[serde(...)]` attributes, in source order.
#[derive(Default)]
pub(crate) struct SerdeAttrs {
    keys: Vec<SerdeKey>,
}

/// One key of a `#[serde(...)]` attribute: `flatten`, `tag = "t"`,
/// `rename(serialize = "a")`.
pub(crate) struct SerdeKey {
    /// The key's path as written without spaces: `flatten`, `tag`.
    name: String,
    /// The key and its value, for errors spanned at exactly these tokens.
    pub(crate) tokens: TokenStream,
}

impl SerdeAttrs {
    /// Reads the keys of every `#[serde(...)]` in `attrs`. A malformed attribute keeps
    /// the keys read before the mistake and is otherwise ignored: serde_derive reports it.
    pub(crate) fn from_attrs(attrs: &[Attribute]) -> Self {
        let mut keys = Vec::new();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
            let _malformed = attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                let value = skip_value(meta.input)?;
                keys.push(SerdeKey {
                    name: path_to_string(path),
                    tokens: quote!(#path #value),
                });
                Ok(())
            });
        }
        SerdeAttrs { keys }
    }

    /// The first key called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&SerdeKey> {
        self.keys.iter().find(|key| key.name == name)
    }

    /// Whether any key is called `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The tokens of every key called one of `names`, in source order: an error spanned
    /// by them runs from the first to the last (`tag = "t", content = "c"`).
    pub(crate) fn tokens_of(&self, names: &[&str]) -> TokenStream {
        self.keys
            .iter()
            .filter(|key| names.contains(&key.name.as_str()))
            .map(|key| key.tokens.clone())
            .collect()
    }
}

/// Skips what is left of one argument, up to the next top-level comma, and returns it.
fn skip_value(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let mut skipped = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        skipped.extend([input.parse::<TokenTree>()?]);
    }
    Ok(skipped)
}

/// Writes a path without the spaces that token printing puts in: `::aiosock`.
pub(crate) fn path_to_string(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(args: TokenStream) -> (String, Vec<String>) {
        let cx = Ctxt::new();
        let parsed = Args::parse(&cx, args);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        };
        (path_to_string(&parsed.krate), errors)
    }

    #[test]
    fn no_arguments_default_to_aiosock() {
        assert_eq!(parse(quote!()), ("::aiosock".to_owned(), vec![]));
    }

    #[test]
    fn crate_argument_sets_path() {
        assert_eq!(
            parse(quote! { crate = "reexport::aiosock" }),
            ("reexport::aiosock".to_owned(), vec![])
        );
        assert_eq!(
            parse(quote! { crate = "crate::a::aiosock", }),
            ("crate::a::aiosock".to_owned(), vec![])
        );
    }

    #[test]
    fn unknown_and_duplicate_arguments_are_all_reported() {
        let (path, errors) = parse(quote! { foo = 1, crate = "a", bar(x, y), crate = "b", baz });
        assert_eq!(path, "a");
        assert_eq!(
            errors,
            [
                "unknown #[aiosock::protocol] argument `foo`; the only argument is `crate = \"...\"`",
                "unknown #[aiosock::protocol] argument `bar`; the only argument is `crate = \"...\"`",
                "duplicate #[aiosock::protocol] argument `crate`",
                "unknown #[aiosock::protocol] argument `baz`; the only argument is `crate = \"...\"`",
            ]
        );
    }

    #[test]
    fn malformed_crate_argument() {
        let expected = "expected `crate = \"...\"` with the path to the aiosock crate, as in `crate = \"my_reexports::aiosock\"`";
        assert_eq!(parse(quote! { crate }).1, [expected]);
        assert_eq!(parse(quote! { crate = aiosock }).1, [expected]);
        let (path, errors) = parse(quote! { crate = "not a path" });
        assert_eq!(path, "::aiosock");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("`crate` must be a path"),
            "{errors:?}"
        );
    }

    fn reply_of(variant: TokenStream) -> (Option<String>, Vec<String>) {
        let variant: syn::Variant = syn::parse2(variant).unwrap();
        let cx = Ctxt::new();
        let reply = reply(&cx, &variant).map(|ty| ty.to_token_stream().to_string());
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        };
        (reply, errors)
    }

    #[test]
    fn reply_holds_any_type() {
        for ty in [
            quote!(u64),
            quote!(()),
            quote!(Vec<String>),
            quote!(Result<u64, MyError>),
            quote!((u64, u32)),
            quote!(::std::option::Option<[u8; 4]>),
        ] {
            assert_eq!(
                reply_of(quote! { #[doc = "x"] #[reply(#ty)] #[serde(rename = "s")] Square(u64) }),
                (Some(ty.to_string()), vec![]),
            );
        }
        assert_eq!(reply_of(quote! { Stop }), (None, vec![]));
        // Only the bare name: `#[x::reply]` is someone else's attribute.
        assert_eq!(reply_of(quote! { #[x::reply(u64)] Stop }), (None, vec![]));
    }

    #[test]
    fn malformed_reply_is_reported() {
        let expected = "expected #[reply(T)] with the type that the call is answered with, as in `#[reply(u64)]`";
        let not_a_type = "#[reply(...)] must hold a type, as in `#[reply(u64)]` or `#[reply(Result<u64, MyError>)]`";
        let several = "#[reply(...)] takes one type; to answer with several values, reply with a tuple or a struct, as in `#[reply((u64, u32))]`";
        for (variant, error) in [
            (quote! { #[reply] A }, expected),
            (quote! { #[reply()] A }, expected),
            (quote! { #[reply = u64] A }, expected),
            (quote! { #[reply[u64]] A }, expected),
            (quote! { #[reply(not a type)] A }, not_a_type),
            (quote! { #[reply(1)] A }, not_a_type),
            (quote! { #[reply(u64, u32)] A }, several),
            (quote! { #[reply(u64,)] A }, several),
        ] {
            assert_eq!(
                reply_of(variant.clone()),
                (None, vec![error.to_owned()]),
                "{variant}"
            );
        }
    }

    #[test]
    fn duplicate_reply_keeps_the_first() {
        assert_eq!(
            reply_of(quote! { #[reply(u64)] #[reply(u32)] #[reply] r#Square(u64) }),
            (
                Some("u64".to_owned()),
                vec![
                    "duplicate #[reply] on variant `Square`; a call has one reply type".to_owned(),
                    "duplicate #[reply] on variant `Square`; a call has one reply type".to_owned(),
                ]
            )
        );
    }

    fn serde_keys(attrs: TokenStream) -> Vec<(String, String)> {
        let item: syn::DeriveInput = syn::parse2(quote! { #attrs struct S; }).unwrap();
        let serde = SerdeAttrs::from_attrs(&item.attrs);
        serde
            .keys
            .iter()
            .map(|key| (key.name.clone(), key.tokens.to_string()))
            .collect()
    }

    #[test]
    fn serde_keys_keep_their_tokens_in_order() {
        assert_eq!(
            serde_keys(quote! {
                #[doc = "not serde"]
                #[serde(tag = "t", rename(serialize = "a"), flatten)]
                #[serde(crate = "x", skip_serializing_if = "Option::is_none",)]
            }),
            [
                ("tag".to_owned(), "tag = \"t\"".to_owned()),
                ("rename".to_owned(), "rename (serialize = \"a\")".to_owned()),
                ("flatten".to_owned(), "flatten".to_owned()),
                ("crate".to_owned(), "crate = \"x\"".to_owned()),
                (
                    "skip_serializing_if".to_owned(),
                    "skip_serializing_if = \"Option::is_none\"".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn malformed_serde_attributes_keep_the_keys_before_the_mistake() {
        assert_eq!(
            serde_keys(quote! { #[serde] #[serde = "x"] #[serde(untagged, "lit", flatten)] }),
            [("untagged".to_owned(), "untagged".to_owned())]
        );
    }
}
