//! The protocol fingerprint: a 64-bit FNV-1a hash of the enum's shape, as written.
//!
//! The hashed text lists, one per line: the enum's name; its `#[serde]` attributes; then
//! for each variant in order, its name and style (`unit`, `tuple`, `struct`), its
//! `#[cfg]` and `#[serde]` attributes, its reply type if it is a call (`#[reply(T)]`), and
//! for each field its name (or position) and its type and `#[serde]` attributes as token
//! strings. So a variant becoming a call, or its reply type changing, changes the
//! fingerprint, and `#[reply(())]` differs from no `#[reply]`. Tokens are written by
//! [`write_tokens`], not by `TokenStream`'s `Display`, whose spacing is rustc's to choose
//! and may differ between compilers: both ends of a channel may be built by different ones.
//!
//! Limits, also documented on `aiosock::Protocol`: only tokens are hashed, so a change in
//! a type behind a field, or naming the same type by another path, is not seen. A variant
//! behind `#[cfg]` is hashed whether or not it is enabled (its `cfg` is part of the text),
//! so two builds with different cfgs have the same fingerprint. Explicit discriminants are
//! not hashed: serde encodes a variant by its position, which is.

use std::fmt::Write as _;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::Attribute;

use crate::ast::{Protocol, Variant};

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The fingerprint of `protocol`: the FNV-1a hash of [`canonical`], except that a hash of
/// 0 becomes 1. The wire gives 0 no meaning (the hello carries the fingerprint as a plain
/// `u64`, and the two ends only compare it for equality); the mapping only keeps the
/// promise that `FINGERPRINT` is never 0, which the example on `aiosock::Protocol` and the
/// ui pass case `all-variant-shapes` assert.
pub(crate) fn fingerprint(protocol: &Protocol<'_>) -> u64 {
    let hash = fnv1a(canonical(protocol).as_bytes());
    if hash == 0 { 1 } else { hash }
}

/// The fingerprint of one variant, for compatible evolution: the FNV-1a hash of the
/// enum's name and `#[serde]` attributes and the variant's part of [`canonical`] (never 0,
/// as [`fingerprint`]). Two builds whose variants at the same position have the same
/// fingerprint encode and decode them the same way, as far as the tokens tell.
pub(crate) fn variant_fingerprint(protocol: &Protocol<'_>, variant: &Variant<'_>) -> u64 {
    let mut out = format!("enum {}\n", protocol.name());
    push_attrs(&mut out, protocol.attrs, "serde");
    push_variant(&mut out, variant);
    let hash = fnv1a(out.as_bytes());
    if hash == 0 { 1 } else { hash }
}

/// The text that is hashed.
pub(crate) fn canonical(protocol: &Protocol<'_>) -> String {
    let mut out = format!("enum {}\n", protocol.name());
    push_attrs(&mut out, protocol.attrs, "serde");
    for variant in &protocol.variants {
        push_variant(&mut out, variant);
    }
    out
}

/// A variant's part of [`canonical`].
fn push_variant(out: &mut String, variant: &Variant<'_>) {
    // Writing to a `String` cannot fail.
    let _ = writeln!(
        out,
        "variant {} {}",
        syn::ext::IdentExt::unraw(variant.ident),
        variant.style.as_str()
    );
    push_attrs(out, &variant.original.attrs, "cfg");
    push_attrs(out, &variant.original.attrs, "serde");
    if let Some(reply) = &variant.reply {
        out.push_str("reply ");
        write_tokens(out, reply.to_token_stream());
        out.push('\n');
    }
    for field in &variant.fields {
        let name = match &field.original.ident {
            Some(ident) => syn::ext::IdentExt::unraw(ident).to_string(),
            None => field.member.to_token_stream().to_string(),
        };
        let _ = write!(out, "field {name} ");
        write_tokens(out, field.ty.to_token_stream());
        out.push('\n');
        push_attrs(out, &field.original.attrs, "serde");
    }
}

fn push_attrs(out: &mut String, attrs: &[Attribute], name: &str) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(name)) {
        out.push_str("attr ");
        write_tokens(out, attr.to_token_stream());
        out.push('\n');
    }
}

/// Writes tokens with one space between tokens, none inside a joint punctuation
/// (`::`, `->`) and none just inside delimiters. Raw identifiers keep their `r#`.
fn write_tokens(out: &mut String, tokens: TokenStream) {
    let mut space = false;
    for token in tokens {
        if space {
            out.push(' ');
        }
        space = true;
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                write_tokens(out, group.stream());
                out.push_str(close);
            }
            TokenTree::Ident(ident) => out.push_str(&ident.to_string()),
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                space = punct.spacing() == Spacing::Alone;
            }
            TokenTree::Literal(literal) => out.push_str(&literal.to_string()),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;
    use syn::{Data, DeriveInput};

    use super::*;
    use crate::ctxt::Ctxt;

    /// `f` applied to the IR of the enum `tokens`.
    fn with_protocol<R>(tokens: TokenStream, f: impl FnOnce(&Protocol<'_>) -> R) -> R {
        let input: DeriveInput = syn::parse2(tokens).unwrap();
        let Data::Enum(data) = &input.data else {
            panic!("not an enum")
        };
        let cx = Ctxt::new();
        let protocol = Protocol::from_syn(&cx, &input, data);
        cx.check().unwrap();
        f(&protocol)
    }

    fn canonical_of(tokens: TokenStream) -> String {
        with_protocol(tokens, canonical)
    }

    fn fingerprint_of(tokens: TokenStream) -> u64 {
        with_protocol(tokens, fingerprint)
    }

    fn to_worker() -> u64 {
        fingerprint_of(quote! {
            pub enum ToWorker { Greet { name: String }, Square(u64), Stop }
        })
    }

    #[test]
    fn fnv1a_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn canonical_text_is_pinned() {
        let text = canonical_of(quote! {
            #[derive(Debug)]
            #[serde(rename_all = "snake_case")]
            pub enum ToWorker {
                /// Docs are not hashed.
                Greet { r#type: String },
                #[cfg(unix)]
                Square(u64),
                Stop = 7,
            }
        });
        assert_eq!(
            text,
            "enum ToWorker\n\
             attr # [serde (rename_all = \"snake_case\")]\n\
             variant Greet struct\n\
             field type String\n\
             variant Square tuple\n\
             attr # [cfg (unix)]\n\
             field 0 u64\n\
             variant Stop unit\n"
        );
    }

    #[test]
    fn tokens_are_written_canonically() {
        let mut out = String::new();
        write_tokens(
            &mut out,
            quote! { ::std::vec::Vec<(u8, [&'static str; 2])> -> r#type },
        );
        assert_eq!(
            out,
            ":: std :: vec :: Vec < (u8 , [& 'static str ; 2]) > -> r#type"
        );
    }

    #[test]
    fn fingerprint_is_pinned() {
        // Changing this value changes the wire handshake: two builds of aiosock with
        // different values cannot talk to each other.
        assert_eq!(to_worker(), 0x3a39_3885_3a4b_a828);
    }

    #[test]
    fn fingerprint_ignores_docs_derives_visibility_and_discriminants() {
        let plain = fingerprint_of(quote! { enum E { A, B(u8) } });
        let decorated = fingerprint_of(quote! {
            /// Docs.
            #[derive(Debug, Clone)]
            pub(crate) enum E { /** A */ A = 1, B(u8) }
        });
        assert_eq!(plain, decorated);
    }

    #[test]
    fn fingerprint_changes_with_the_shape() {
        let base = to_worker();
        for changed in [
            quote! { pub enum ToWorker { Greet { name: String }, Square(u32), Stop } },
            quote! { pub enum ToWorker { Greet { name: String }, Squared(u64), Stop } },
            quote! { pub enum ToWorker { Square(u64), Greet { name: String }, Stop } },
            quote! { pub enum ToWorker { Greet { who: String }, Square(u64), Stop } },
            quote! { pub enum ToWorker { Greet(String), Square(u64), Stop } },
            quote! { pub enum ToWorker { Greet { name: String }, Square(u64), Stop() } },
            quote! { pub enum ToWorker { Greet { name: String }, Square(u64) } },
            quote! { pub enum FromWorker { Greet { name: String }, Square(u64), Stop } },
            quote! {
                pub enum ToWorker { Greet { #[serde(rename = "n")] name: String }, Square(u64), Stop }
            },
        ] {
            assert_ne!(fingerprint_of(changed.clone()), base, "{changed}");
        }
    }

    #[test]
    fn canonical_text_has_the_reply_type() {
        assert_eq!(
            canonical_of(quote! {
                enum ToWorker {
                    #[cfg(unix)]
                    #[reply(Result<u64, ::std::string::String>)]
                    Square(u64),
                    #[reply(())]
                    Stop,
                }
            }),
            "enum ToWorker\n\
             variant Square tuple\n\
             attr # [cfg (unix)]\n\
             reply Result < u64 , :: std :: string :: String >\n\
             field 0 u64\n\
             variant Stop unit\n\
             reply ()\n"
        );
    }

    #[test]
    fn fingerprint_changes_with_the_reply_type() {
        let one_way = fingerprint_of(quote! { enum E { Square(u64), Stop } });
        let call = fingerprint_of(quote! { enum E { #[reply(u64)] Square(u64), Stop } });
        let other_reply = fingerprint_of(quote! { enum E { #[reply(u32)] Square(u64), Stop } });
        let unit_reply = fingerprint_of(quote! { enum E { #[reply(())] Square(u64), Stop } });
        let other_call = fingerprint_of(quote! { enum E { Square(u64), #[reply(u64)] Stop } });
        let all = [one_way, call, other_reply, unit_reply, other_call];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b, "{all:x?}");
            }
        }
        // The reply's type is hashed, not its attribute: docs and where the attribute
        // sits among the others change nothing.
        assert_eq!(
            call,
            fingerprint_of(quote! { enum E { #[reply(u64)] /** Squares. */ Square(u64), Stop } })
        );
    }

    #[test]
    fn a_variant_s_fingerprint_depends_on_it_and_the_enum_only() {
        let prints = |tokens: TokenStream| {
            with_protocol(tokens, |p| {
                p.variants
                    .iter()
                    .map(|v| variant_fingerprint(p, v))
                    .collect::<Vec<_>>()
            })
        };
        let v1 = prints(quote! { enum E { A(u8), #[reply(u8)] B } });
        let v2 = prints(quote! { enum E { A(u8), #[reply(u8)] B, #[added] C { x: String } } });
        assert_eq!(v1[..], v2[..2], "an added variant leaves the others alone");
        assert_ne!(v2[2], v2[0]);
        // The enum's name and serde attributes are part of every variant's.
        assert_ne!(prints(quote! { enum F { A(u8) } })[0], v1[0]);
        assert_ne!(
            prints(quote! { #[serde(rename_all = "lowercase")] enum E { A(u8) } })[0],
            v1[0]
        );
        // So is the variant's shape, its reply type and its place's cfg.
        for changed in [
            quote! { enum E { A(u16) } },
            quote! { enum E { #[reply(u8)] A(u8) } },
            quote! { enum E { #[cfg(unix)] A(u8) } },
            quote! { enum E { Aa(u8) } },
        ] {
            assert_ne!(prints(changed.clone())[0], v1[0], "{changed}");
        }
        // `#[added]` itself is not: one side may mark a variant the other has always had.
        assert_eq!(prints(quote! { enum E { #[added] A(u8) } })[0], v1[0]);
    }

    #[test]
    fn raw_identifiers_hash_like_plain_ones() {
        assert_eq!(
            fingerprint_of(quote! { enum r#Match { r#Type { r#x: u8 } } }),
            fingerprint_of(quote! { enum Match { Type { x: u8 } } }),
        );
    }
}
