//! The arguments of `#[aiosock::protocol(...)]`.
//!
//! A malformed, unknown or duplicate argument records an error in the [`Ctxt`] and
//! parsing goes on with the next one, so that every mistake is reported in one build.
//! The one argument is `crate = "path"`, which mirrors serde's `#[serde(crate = "...")]`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser as _};
use syn::{LitStr, Path, Token};

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

/// Skips what is left of one argument, up to the next top-level comma.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
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
}
