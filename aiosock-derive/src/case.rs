//! The names of the methods generated for a variant: the handler method, `on_` and the
//! variant's name in snake_case, and the client method, the variant's name in snake_case.

use proc_macro2::Ident;
use quote::format_ident;
use syn::ext::IdentExt as _;

/// `Greet` gives `on_greet`, `HTTPRequest` gives `on_http_request`, `r#Match` gives
/// `on_match`. The method is spanned at the variant, so that rustc's "missing `on_greet`"
/// and "duplicate definition" errors point there.
pub(crate) fn method_name(variant: &Ident) -> Ident {
    let snake = to_snake_case(&variant.unraw().to_string());
    format_ident!("on_{}", snake, span = variant.span())
}

/// `Square` gives `square`, `HTTPRequest` gives `http_request`, and a name that is a
/// keyword is written raw: `r#Match` gives `r#match`. The method is spanned at the
/// variant, like the handler method.
///
/// `None` when the name cannot be a method's: empty (a variant named `__`), starting with
/// a digit (`_1`), or one of the keywords that cannot be raw identifiers (`self`, `super`,
/// `crate`, from variants such as `Self_` or `Super`). `check` reports those.
pub(crate) fn client_method_name(variant: &Ident) -> Option<Ident> {
    let snake = to_snake_case(&variant.unraw().to_string());
    if NOT_RAW.contains(&snake.as_str()) {
        return None;
    }
    if KEYWORDS.contains(&snake.as_str()) {
        return Some(Ident::new_raw(&snake, variant.span()));
    }
    let ident = syn::parse_str::<Ident>(&snake).ok()?;
    Some(Ident::new(&ident.to_string(), variant.span()))
}

/// Keywords that cannot be raw identifiers, so no method can have their name.
const NOT_RAW: &[&str] = &["self", "super", "crate", "Self", "_"];

/// The strict and reserved keywords of every edition up to 2024, which a method name
/// must write raw. A name that is a keyword only in a later edition than the user's
/// (`gen`, `async`) is still valid written raw.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// Converts a CamelCase (or already snake_case) name to snake_case.
///
/// Words break at an underscore, before an uppercase letter that follows a lowercase
/// letter or a digit, and before the last capital of an acronym when a lowercase letter
/// follows it (`HTTPRequest` is `http` + `request`). Digits stay with the word before
/// them (`Http2Request` is `http2_request`). Runs of underscores collapse to one, and
/// leading and trailing underscores are dropped, so `FooBar` and `Foo_Bar` give the same
/// name: the collision check relies on that.
pub(crate) fn to_snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            continue;
        }
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let word_starts = prev.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_numeric()
                    || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
            if word_starts && !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;

    use super::*;

    #[test]
    fn snake_case_of_variant_names() {
        for (input, expected) in [
            ("Square", "square"),
            ("Greet", "greet"),
            ("GetX", "get_x"),
            ("HTTPRequest", "http_request"),
            ("IOError", "io_error"),
            ("FooBAR", "foo_bar"),
            ("ABC", "abc"),
            ("A", "a"),
            ("Http2Request", "http2_request"),
            ("V2", "v2"),
            ("FooBar", "foo_bar"),
            ("Foo_Bar", "foo_bar"),
            ("Foo__Bar", "foo_bar"),
            ("_Foo", "foo"),
            ("Foo_", "foo"),
            ("already_snake", "already_snake"),
            ("type", "type"),
            ("ÜberCool", "über_cool"),
        ] {
            assert_eq!(to_snake_case(input), expected, "{input}");
        }
    }

    #[test]
    fn method_name_adds_prefix() {
        let ident = Ident::new("HTTPRequest", Span::call_site());
        assert_eq!(method_name(&ident).to_string(), "on_http_request");
    }

    fn client(name: &str) -> Option<String> {
        let ident = match name.strip_prefix("r#") {
            Some(raw) => Ident::new_raw(raw, Span::call_site()),
            None => Ident::new(name, Span::call_site()),
        };
        client_method_name(&ident).map(|ident| ident.to_string())
    }

    #[test]
    fn client_method_names() {
        for (input, expected) in [
            ("Square", Some("square")),
            ("HTTPRequest", Some("http_request")),
            ("TrySquare", Some("try_square")),
            ("r#Match", Some("r#match")),
            ("Match", Some("r#match")),
            ("r#type", Some("r#type")),
            ("Try", Some("r#try")),
            ("Gen", Some("r#gen")),
            ("Async", Some("r#async")),
            ("Union", Some("union")),
            ("New", Some("new")),
            ("Self_", None),
            ("Super", None),
            ("Crate", None),
            ("__", None),
            ("_1", None),
        ] {
            assert_eq!(client(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn method_name_strips_raw_prefix() {
        let ident = Ident::new_raw("Match", Span::call_site());
        assert_eq!(method_name(&ident).to_string(), "on_match");
        let ident = Ident::new_raw("type", Span::call_site());
        assert_eq!(method_name(&ident).to_string(), "on_type");
    }
}
