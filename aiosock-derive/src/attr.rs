//! The arguments of `#[aiosock::protocol(...)]`, and the keys of the user's `#[serde(...)]`
//! attributes.
//!
//! A malformed, unknown or duplicate argument records an error in the [`Ctxt`] and
//! parsing goes on with the next one, so that every mistake is reported in one build.
//! The one argument is `crate = "path"`, which mirrors serde's `#[serde(crate = "...")]`.
//!
//! `#[serde(...)]` attributes are only read here, never judged: `check` rejects the keys
//! that bincode cannot carry, and everything else (unknown keys, malformed attributes) is
//! left to serde_derive, which reports it.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser as _};
use syn::{Attribute, LitStr, Path, Token};

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
