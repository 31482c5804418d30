//! The macro's view of the input: a borrowed copy of the enum's parts that code
//! generation needs, each keeping `original` for spans.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens as _, format_ident};
use syn::{Attribute, DataEnum, DeriveInput, Fields, Generics, Index, Member, Type, Visibility};

use crate::attr::{self, SerdeAttrs};
use crate::case;
use crate::ctxt::Ctxt;

/// The enum that `#[aiosock::protocol]` was applied to.
pub(crate) struct Protocol<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) attrs: &'a [Attribute],
    pub(crate) generics: &'a Generics,
    /// The keys of the enum's `#[serde(...)]` attributes.
    pub(crate) serde: SerdeAttrs,
    pub(crate) variants: Vec<Variant<'a>>,
    pub(crate) original: &'a DeriveInput,
}

/// One variant: one message kind, one handler method.
pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) style: Style,
    pub(crate) fields: Vec<Field<'a>>,
    /// The handler method, `on_<snake_case>`, spanned at the variant's name.
    pub(crate) method: Ident,
    /// The earlier variant that already has this variant's handler method (`FooBar`
    /// before `Foo_Bar`), if any. `check` reports it, and `expand` gives such a variant no
    /// method of its own, so the one collision is not reported again by rustc.
    pub(crate) method_taken_by: Option<&'a Ident>,
    /// The type in the variant's `#[reply(T)]`: the variant is a call, which the peer's
    /// handler answers with a `T`. `None` for a one-way variant. A `Self` in it (an error,
    /// which `check` reports) is replaced by the enum's name, so that the expansion names
    /// one type everywhere and rustc adds no errors of its own.
    pub(crate) reply: Option<Type>,
    /// The generated client's method: the variant's name in snake_case (raw if it is a
    /// keyword), spanned at the variant's name. `None` if that name cannot be a method's
    /// (`check` reports it).
    pub(crate) client_method: Option<Ident>,
    /// The keys of the variant's `#[serde(...)]` attributes.
    pub(crate) serde: SerdeAttrs,
    /// Marked `#[added]`: a peer built with an earlier version of the enum may not know
    /// this variant.
    pub(crate) added: bool,
    pub(crate) original: &'a syn::Variant,
}

/// How a variant's fields are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `Stop`
    Unit,
    /// `Square(u64)`
    Tuple,
    /// `Greet { name: String }`
    Struct,
}

impl Style {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Style::Unit => "unit",
            Style::Tuple => "tuple",
            Style::Struct => "struct",
        }
    }
}

/// One field of a variant: one argument of its handler method.
pub(crate) struct Field<'a> {
    /// The field's name, or its position in a tuple variant.
    pub(crate) member: Member,
    /// The handler method's parameter: the field's name (raw if written raw), or `_0`,
    /// `_1`, … for a tuple variant.
    pub(crate) param: Ident,
    /// The local that the dispatch `match` binds the field to: `__0`, `__1`, …, so that
    /// no field name can shadow the generated `__handler`.
    pub(crate) binding: Ident,
    pub(crate) ty: &'a Type,
    /// The keys of the field's `#[serde(...)]` attributes.
    pub(crate) serde: SerdeAttrs,
    pub(crate) original: &'a syn::Field,
}

impl<'a> Protocol<'a> {
    /// Builds the IR of an enum. The caller has checked that `input` is an enum. A
    /// malformed `#[reply]` is recorded in `cx`.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput, data: &'a DataEnum) -> Self {
        Protocol {
            ident: &input.ident,
            vis: &input.vis,
            attrs: &input.attrs,
            generics: &input.generics,
            serde: SerdeAttrs::from_attrs(&input.attrs),
            variants: Variant::all_from_syn(cx, &input.ident, data),
            original: input,
        }
    }

    /// The enum's name as a string, without `r#`.
    pub(crate) fn name(&self) -> String {
        syn::ext::IdentExt::unraw(self.ident).to_string()
    }
}

impl<'a> Variant<'a> {
    /// The variants in order, each knowing whether an earlier one took its method name.
    fn all_from_syn(cx: &Ctxt, enum_ident: &Ident, data: &'a DataEnum) -> Vec<Self> {
        let mut variants: Vec<Self> = data
            .variants
            .iter()
            .map(|variant| Variant::from_syn(cx, enum_ident, variant))
            .collect();
        let mut first_with = HashMap::new();
        for variant in &mut variants {
            match first_with.entry(variant.method.to_string()) {
                Entry::Occupied(first) => variant.method_taken_by = Some(*first.get()),
                Entry::Vacant(slot) => {
                    slot.insert(variant.ident);
                }
            }
        }
        variants
    }

    fn from_syn(cx: &Ctxt, enum_ident: &Ident, variant: &'a syn::Variant) -> Self {
        let style = match &variant.fields {
            Fields::Unit => Style::Unit,
            Fields::Unnamed(_) => Style::Tuple,
            Fields::Named(_) => Style::Struct,
        };
        let fields = variant
            .fields
            .iter()
            .enumerate()
            .map(|(i, field)| Field::from_syn(i, field))
            .collect();
        Variant {
            ident: &variant.ident,
            style,
            fields,
            method: case::method_name(&variant.ident),
            method_taken_by: None,
            reply: attr::reply(cx, variant).map(|ty| replace_self(&ty, enum_ident)),
            client_method: case::client_method_name(&variant.ident),
            serde: SerdeAttrs::from_attrs(&variant.attrs),
            added: attr::added(cx, variant),
            original: variant,
        }
    }

    /// The variant's `#[doc]` attributes, carried onto its handler method.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.original
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
    }

    /// The variant's `#[cfg]` attributes, carried onto its method and its dispatch arm.
    pub(crate) fn cfgs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.original
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
    }
}

impl<'a> Field<'a> {
    fn from_syn(i: usize, field: &'a syn::Field) -> Self {
        let (member, param) = match &field.ident {
            Some(ident) => (Member::Named(ident.clone()), ident.clone()),
            None => (
                Member::Unnamed(Index {
                    index: u32::try_from(i).expect("more than u32::MAX fields"),
                    span: Span::call_site(),
                }),
                format_ident!("_{}", i),
            ),
        };
        Field {
            member,
            param,
            binding: format_ident!("__{}", i),
            ty: &field.ty,
            serde: SerdeAttrs::from_attrs(&field.attrs),
            original: field,
        }
    }
}

/// `ty` with every `Self` replaced by `name` (spanned at the `Self`).
fn replace_self(ty: &Type, name: &Ident) -> Type {
    fn replace(tokens: TokenStream, name: &Ident) -> TokenStream {
        tokens
            .into_iter()
            .map(|token| match token {
                TokenTree::Ident(ident) if ident == "Self" => {
                    let mut name = name.clone();
                    name.set_span(ident.span());
                    TokenTree::Ident(name)
                }
                TokenTree::Group(group) => {
                    let mut replaced = Group::new(group.delimiter(), replace(group.stream(), name));
                    replaced.set_span(group.span());
                    TokenTree::Group(replaced)
                }
                other => other,
            })
            .collect()
    }
    syn::parse2(replace(ty.to_token_stream(), name)).unwrap_or_else(|_| ty.clone())
}
