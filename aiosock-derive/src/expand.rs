//! Code generation. [`protocol`] is the whole macro on `proc_macro2` types: it reads the
//! arguments and the item, checks them, and emits the output. A [`Generator`] has one
//! method per emitted item.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{Attribute, Data, DeriveInput, GenericArgument, LitStr, PathArguments, Type};

use crate::ast::{Protocol, Style, Variant};
use crate::attr::{self, Args, SerdeAttrs};
use crate::check;
use crate::ctxt::Ctxt;
use crate::fingerprint;

/// The expansion of `#[protocol(args)] input`, with any errors appended as
/// `compile_error!`s.
pub(crate) fn protocol(args: TokenStream, input: TokenStream) -> TokenStream {
    let (mut output, errors) = expand(args, input);
    if let Some(errors) = errors {
        output.extend(errors.into_compile_error());
    }
    output
}

/// The expansion and, apart, the errors.
///
/// With errors, the output is still as useful as it can be, so that the user's other
/// code does not fail too (thiserror's `fallback.rs`): if the item is an enum without
/// generics, the full expansion (a variant whose method name collides with an earlier
/// one gets no method); for an enum with generics, the user's item less its `#[serde]`
/// attributes; otherwise the user's item unchanged.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> (TokenStream, Option<syn::Error>) {
    let cx = Ctxt::new();
    let args = Args::parse(&cx, args);
    let derive_input = match syn::parse2::<DeriveInput>(input.clone()) {
        Ok(derive_input) => derive_input,
        Err(err) => {
            cx.syn_error(check::not_an_item(&input).unwrap_or(err));
            return (input, cx.check().err());
        }
    };
    let Some(data) = check::is_enum(&cx, &derive_input) else {
        return (input, cx.check().err());
    };
    let protocol = Protocol::from_syn(&cx, &derive_input, data);
    check::check(&cx, &protocol);
    let errors = cx.check().err();
    if errors.is_some() && !check::can_expand_anyway(&protocol) {
        return (without_helper_attrs(derive_input), errors);
    }
    let output = Generator::new(&protocol, &args).into_token_stream();
    (output, errors)
}

/// The user's enum as written, less its `#[serde(...)]` and `#[reply(...)]` attributes:
/// nothing derives serde for it, so rustc would add a "cannot find attribute" error for
/// each.
fn without_helper_attrs(mut item: DeriveInput) -> TokenStream {
    let not_serde = |attr: &Attribute| !attr.path().is_ident("serde");
    item.attrs.retain(not_serde);
    if let Data::Enum(data) = &mut item.data {
        for variant in &mut data.variants {
            variant.attrs.retain(not_serde);
            for field in &mut variant.fields {
                field.attrs.retain(not_serde);
            }
        }
    }
    strip_own_attrs(&mut item);
    item.into_token_stream()
}

/// Removes every `#[reply(...)]` and `#[added]` from the enum, its variants and their
/// fields: they are the macro's own attributes, not real ones. (On the enum or a field
/// they are errors, which `check` reports.)
fn strip_own_attrs(item: &mut DeriveInput) {
    let not_reply = |attr: &Attribute| !attr::is_reply(attr) && !attr::is_added(attr);
    item.attrs.retain(not_reply);
    if let Data::Enum(data) = &mut item.data {
        for variant in &mut data.variants {
            variant.attrs.retain(not_reply);
            for field in &mut variant.fields {
                field.attrs.retain(not_reply);
            }
        }
    }
}

/// Emits, for an enum `Foo`: the enum with the serde derives added, the trait
/// `FooHandler`, the struct `FooClient` and its methods, and in an anonymous `const` the
/// impls of `Protocol` and `Dispatch`, the client's trait impls and the check that the
/// reply types are serde types.
struct Generator<'a> {
    protocol: &'a Protocol<'a>,
    args: &'a Args,
    /// `<crate>::__private`.
    private: TokenStream,
    /// `FooHandler`, spanned at the enum's name.
    handler: Ident,
    /// `FooClient`, spanned at the enum's name.
    client: Ident,
}

impl<'a> Generator<'a> {
    fn new(protocol: &'a Protocol<'a>, args: &'a Args) -> Self {
        let krate = &args.krate;
        Generator {
            protocol,
            args,
            private: quote!(#krate::__private),
            handler: format_ident!("{}Handler", protocol.name(), span = protocol.ident.span()),
            client: format_ident!("{}Client", protocol.name(), span = protocol.ident.span()),
        }
    }

    /// A string literal naming `<crate>::__private::<item>`, for serde's attributes.
    fn private_path_lit(&self, item: &str) -> LitStr {
        LitStr::new(
            &format!(
                "{}::__private::{item}",
                attr::path_to_string(&self.args.krate)
            ),
            self.args.krate_span,
        )
    }

    /// The user's enum with the serde derives, `#[serde(crate = "...")]`, and
    /// `#[serde(with = "<crate>::__private::bytes")]` on each field written `Vec<u8>`.
    ///
    /// The derive goes first so that `#[serde(...)]` attributes the user wrote come
    /// after it, where rustc expects derive helpers.
    fn item_enum(&self) -> TokenStream {
        let mut item = self.protocol.original.clone();
        let private = &self.private;
        let serde_crate = self.private_path_lit("serde");
        let bytes = self.private_path_lit("bytes");
        strip_own_attrs(&mut item);
        let added: [Attribute; 2] = [
            syn::parse_quote!(#[derive(#private::serde::Serialize, #private::serde::Deserialize)]),
            syn::parse_quote!(#[serde(crate = #serde_crate)]),
        ];
        item.attrs.splice(0..0, added);
        if let Data::Enum(data) = &mut item.data {
            let fields = data.variants.iter_mut().flat_map(|v| v.fields.iter_mut());
            let ir_fields = self.protocol.variants.iter().flat_map(|v| &v.fields);
            for (field, ir_field) in fields.zip(ir_fields) {
                if is_byte_vec(ir_field.ty) && !has_serde_with(&ir_field.serde) {
                    field.attrs.push(syn::parse_quote!(#[serde(with = #bytes)]));
                }
            }
        }
        item.into_token_stream()
    }

    /// `trait FooHandler`: one required method per variant and the provided `closed`.
    fn trait_handler(&self) -> TokenStream {
        let vis = self.protocol.vis;
        let handler = &self.handler;
        let name = self.protocol.name();
        let doc = format!(
            " Handles the messages of `{name}`: one method per variant, called with the variant's fields."
        );
        let methods = self
            .protocol
            .variants
            .iter()
            // A colliding name has been reported; a second method would only add an error.
            .filter(|variant| variant.method_taken_by.is_none())
            .map(|variant| self.handler_method(variant));
        quote! {
            #[doc = #doc]
            #[doc = ""]
            #[doc = " Generated by `#[aiosock::protocol]`. Implement each method with an `async fn`"]
            #[doc = " whose future is `Send`, then pass the handler to `Receiver::serve`, or call"]
            #[doc = " `Dispatch::dispatch` on a message."]
            // A variant with many fields gives a method with as many parameters.
            #[allow(clippy::too_many_arguments)]
            #vis trait #handler: ::core::marker::Send {
                #(#methods)*

                /// Called once after the peer closed the channel and every earlier message
                /// was handled.
                ///
                /// Does nothing unless overridden.
                fn closed(&mut self) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send {
                    async {}
                }
            }
        }
    }

    fn handler_method(&self, variant: &Variant<'_>) -> TokenStream {
        let doc = format!(
            " Called for each `{}::{}` message.",
            self.protocol.name(),
            syn::ext::IdentExt::unraw(variant.ident),
        );
        let docs: Vec<_> = variant.docs().collect();
        let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        let cfgs = variant.cfgs();
        let method = &variant.method;
        let params = variant.fields.iter().map(|field| &field.param);
        let tys = variant.fields.iter().map(|field| field.ty);
        let output = match &variant.reply {
            Some(reply) => reply.to_token_stream(),
            None => quote!(()),
        };
        let reply_doc = variant.reply.as_ref().map(|reply| {
            let doc = format!(
                " A call: what the method returns is sent back as the reply, a `{}`.",
                type_to_string(reply),
            );
            quote!(#[doc = ""] #[doc = #doc])
        });
        // The signature is spanned at the variant, so that rustc's "`on_greet` from trait"
        // note under a missing method points there rather than at the attribute.
        let signature = quote_spanned! {variant.ident.span()=>
            fn #method(&mut self #(, #params: #tys)*) -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
        };
        quote! {
            #[doc = #doc]
            #reply_doc
            #separator
            #(#docs)*
            #(#cfgs)*
            #signature
        }
    }

    /// `impl Protocol for Foo`.
    fn impl_protocol(&self) -> TokenStream {
        let private = &self.private;
        let ident = self.protocol.ident;
        let name = self.protocol.name();
        let fingerprint = Literal::u64_suffixed(fingerprint::fingerprint(self.protocol));
        let has_calls = self.has_calls();
        let evolution = self.evolution();
        let held_fields = self.visit_held_fields();
        quote! {
            #[automatically_derived]
            impl #private::Protocol for #ident {
                const NAME: &'static ::core::primitive::str = #name;
                const FINGERPRINT: ::core::primitive::u64 = #fingerprint;
                const HAS_CALLS: ::core::primitive::bool = #has_calls;
                #evolution
                #held_fields
            }
        }
    }

    /// `Protocol::visit_held_fields`: every field of the message's variant goes through
    /// `__private::held::Probe`, which visits those of type `Vec<u8>`, `aiosock::Bytes` or
    /// `aiosock::Fd` (found by method resolution, not by the type's name) and skips the
    /// rest. A send may hand the large byte fields to the kernel from their own buffers,
    /// and the descriptors themselves. Nothing (the trait's default) for an enum whose
    /// variants have no fields.
    fn visit_held_fields(&self) -> TokenStream {
        let private = &self.private;
        let arms: Vec<_> = self
            .protocol
            .variants
            .iter()
            .filter(|variant| !variant.fields.is_empty())
            .map(|variant| {
                let cfgs = variant.cfgs();
                let ident = variant.ident;
                let members = variant.fields.iter().map(|field| &field.member);
                let bindings: Vec<_> = variant.fields.iter().map(|field| &field.binding).collect();
                quote! {
                    #(#cfgs)*
                    Self::#ident { #(#members: #bindings,)* .. } => {
                        #((&#private::held::Probe(#bindings)).held(__visit);)*
                    }
                }
            })
            .collect();
        if arms.is_empty() {
            return TokenStream::new();
        }
        quote! {
            #[doc(hidden)]
            fn visit_held_fields<'__a>(
                &'__a self,
                __visit: &mut dyn ::core::ops::FnMut(#private::held::Field<'__a>),
            ) {
                #[allow(unused_imports)]
                use #private::held::{ViaField as _, ViaNothing as _};
                match self {
                    #(#arms)*
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
            }
        }
    }

    /// The items of `Protocol` for compatible evolution: the names and fingerprints of the
    /// variants compiled in, in the order serde numbers them (a variant behind a `#[cfg]`
    /// that is off has no number), how many of them are not `#[added]`, and the number of
    /// a message's variant. Computed in constant blocks, each variant's step under the
    /// variant's `#[cfg]`s.
    fn evolution(&self) -> TokenStream {
        let variants = &self.protocol.variants;
        let count = variants.iter().map(|variant| {
            let cfgs = variant.cfgs();
            quote!(#(#cfgs)* { __n += 1; })
        });
        let baseline = variants.iter().filter(|v| !v.added).map(|variant| {
            let cfgs = variant.cfgs();
            quote!(#(#cfgs)* { __n += 1; })
        });
        let fill = |value: &dyn Fn(&Variant<'_>) -> TokenStream| -> Vec<TokenStream> {
            variants
                .iter()
                .map(|variant| {
                    let cfgs = variant.cfgs();
                    let value = value(variant);
                    quote!(#(#cfgs)* { __all[__i] = #value; __i += 1; })
                })
                .collect()
        };
        let names = fill(&|variant| {
            let name = syn::ext::IdentExt::unraw(variant.ident).to_string();
            quote!(#name)
        });
        let prints = fill(&|variant| {
            let print =
                Literal::u64_suffixed(fingerprint::variant_fingerprint(self.protocol, variant));
            quote!(#print)
        });
        let arms = variants.iter().enumerate().map(|(at, variant)| {
            let cfgs: Vec<_> = variant.cfgs().collect();
            let ident = variant.ident;
            let before = variants[..at].iter().map(|earlier| {
                let cfgs = earlier.cfgs();
                quote!(#(#cfgs)* { __i += 1; })
            });
            if at == 0 {
                return quote!(#(#cfgs)* Self::#ident { .. } => 0,);
            }
            quote! {
                #(#cfgs)*
                Self::#ident { .. } => {
                    let mut __i = 0usize;
                    #(#before)*
                    __i
                }
            }
        });
        let private = &self.private;
        let ident = self.protocol.ident;
        let count_of = quote!(<#ident as #private::Protocol>::VARIANT_COUNT);
        quote! {
            #[doc(hidden)]
            const VARIANT_COUNT: ::core::primitive::usize = {
                let mut __n = 0usize;
                #(#count)*
                __n
            };
            const VARIANTS: &'static [&'static ::core::primitive::str] = &{
                let mut __all = [""; #count_of];
                let mut __i = 0usize;
                #(#names)*
                let _ = __i;
                __all
            };
            const BASELINE: ::core::primitive::usize = {
                let mut __n = 0usize;
                #(#baseline)*
                __n
            };
            #[doc(hidden)]
            const VARIANT_FINGERPRINTS: &'static [::core::primitive::u64] = &{
                let mut __all = [0u64; #count_of];
                let mut __i = 0usize;
                #(#prints)*
                let _ = __i;
                __all
            };
            #[doc(hidden)]
            fn variant_index(&self) -> ::core::primitive::usize {
                match *self {
                    #(#arms)*
                }
            }
        }
    }

    /// Whether any variant is a call, as a constant expression: `true` or `false`, or,
    /// when every call variant is behind a `#[cfg]`, a block that is `true` when one of
    /// them is compiled in.
    fn has_calls(&self) -> TokenStream {
        let calls: Vec<_> = self
            .protocol
            .variants
            .iter()
            .filter(|variant| variant.reply.is_some())
            .collect();
        if calls.is_empty() {
            return quote!(false);
        }
        if calls.iter().any(|variant| variant.cfgs().next().is_none()) {
            return quote!(true);
        }
        let sets = calls.iter().map(|variant| {
            let cfgs = variant.cfgs();
            quote! {
                #(#cfgs)*
                {
                    __has_calls = true;
                }
            }
        });
        quote! {
            {
                let mut __has_calls = false;
                #(#sets)*
                __has_calls
            }
        }
    }

    /// `impl<H: FooHandler> Dispatch<H> for Foo`: `match`es that call the variant's method
    /// by its fully qualified path, so no inherent method of the handler can take its
    /// place. `dispatch` drops what a call variant's method returns; `dispatch_answer`
    /// encodes it as the reply.
    fn impl_dispatch(&self) -> TokenStream {
        let private = &self.private;
        let ident = self.protocol.ident;
        let handler = &self.handler;
        let dispatch_arms = self.dispatch_arms(|variant, call| {
            if variant.reply.is_some() {
                quote!({
                    let _ = #call.await;
                })
            } else {
                quote!(#call.await,)
            }
        });
        let answer_arms = self.dispatch_arms(|variant, call| {
            if let Some(reply) = &variant.reply {
                // Spanned at the reply type: see `client_methods`.
                let answer = quote_spanned!(reply.span()=> #private::Answer::of(&__reply));
                quote!({
                    let __reply = #call.await;
                    #answer
                })
            } else {
                quote!({
                    #call.await;
                    #private::Answer::none()
                })
            }
        });
        quote! {
            #[automatically_derived]
            impl<__H: #handler> #private::Dispatch<__H> for #ident {
                fn dispatch(
                    self,
                    __handler: &mut __H,
                ) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send {
                    async move {
                        match self {
                            #(#dispatch_arms)*
                        }
                    }
                }

                fn closed(
                    __handler: &mut __H,
                ) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send {
                    <__H as #handler>::closed(__handler)
                }

                fn dispatch_answer(
                    self,
                    __handler: &mut __H,
                ) -> impl ::core::future::Future<Output = #private::Answer> + ::core::marker::Send {
                    async move {
                        match self {
                            #(#answer_arms)*
                        }
                    }
                }
            }
        }
    }

    /// One `match` arm per variant, binding its fields to `__0`, `__1`, …; `body` makes the
    /// arm's body from the variant and the call of its handler method (without `.await`).
    fn dispatch_arms(
        &self,
        body: impl Fn(&Variant<'_>, TokenStream) -> TokenStream,
    ) -> Vec<TokenStream> {
        let handler = &self.handler;
        self.protocol
            .variants
            .iter()
            .map(|variant| {
                let cfgs = variant.cfgs();
                let variant_ident = variant.ident;
                let method = &variant.method;
                if variant.method_taken_by.is_some() {
                    // Its method name collides (already reported); the build fails anyway.
                    return quote! {
                        #(#cfgs)*
                        Self::#variant_ident { .. } => ::core::unreachable!(),
                    };
                }
                let bindings = variant.fields.iter().map(|field| &field.binding);
                let pattern = match variant.style {
                    Style::Unit => quote!(Self::#variant_ident),
                    Style::Tuple => quote!(Self::#variant_ident(#(#bindings),*)),
                    Style::Struct => {
                        let members = variant.fields.iter().map(|field| &field.member);
                        quote!(Self::#variant_ident { #(#members: #bindings),* })
                    }
                };
                let bindings = variant.fields.iter().map(|field| &field.binding);
                let call = quote!(<__H as #handler>::#method(__handler #(, #bindings)*));
                let body = body(variant, call);
                quote! {
                    #(#cfgs)*
                    #pattern => #body
                }
            })
            .collect()
    }

    /// A function, never called, that requires every reply type to be a serde type that
    /// can travel (`Serialize + DeserializeOwned + Send + 'static`). Each requirement is
    /// spanned at the reply type, so that rustc's "trait bound not satisfied" error points
    /// at the type in `#[reply(...)]`.
    fn assert_replies(&self) -> TokenStream {
        let private = &self.private;
        let asserts: Vec<_> = self
            .protocol
            .variants
            .iter()
            .filter_map(|variant| {
                let reply = variant.reply.as_ref()?;
                let cfgs = variant.cfgs();
                let assert = quote_spanned! {reply.span()=>
                    __aiosock_assert_reply::<#reply>();
                };
                Some(quote!(#(#cfgs)* #assert))
            })
            .collect();
        if asserts.is_empty() {
            return TokenStream::new();
        }
        quote! {
            fn __aiosock_assert_reply<
                __R: #private::serde::Serialize
                    + #private::serde::de::DeserializeOwned
                    + ::core::marker::Send
                    + 'static,
            >() {
            }

            fn __aiosock_assert_replies() {
                #(#asserts)*
            }
        }
    }

    /// `struct FooClient`, with the enum's visibility: a `Sender<Foo>` inside.
    fn struct_client(&self) -> TokenStream {
        let krate = &self.args.krate;
        let vis = self.protocol.vis;
        let ident = self.protocol.ident;
        let client = &self.client;
        let name = self.protocol.name();
        let doc = format!(
            " Sends the messages of `{name}` through a `Sender<{name}>`: one method per variant."
        );
        quote! {
            #[doc = #doc]
            #[doc = ""]
            #[doc = " Generated by `#[aiosock::protocol]`. A variant declared with `#[reply(T)]` is a"]
            #[doc = " call: its method sends the message and waits for the peer's reply, giving a"]
            #[doc = " `Result<T, CallError>`, and its `try_` method fails at once with `CallError::Full`"]
            #[doc = " where the other would wait for room. The method of a one-way variant sends the"]
            #[doc = " message, as `Sender::send` does."]
            #[doc = ""]
            #[doc = " The client dereferences to its sender, so `send`, `try_send`, `closed` and the"]
            #[doc = " other methods of `Sender` work on it too (a variant's method hides the one of the"]
            #[doc = " same name; `sender()` still reaches it)."]
            #vis struct #client {
                sender: #krate::Sender<#ident>,
            }
        }
    }

    /// `impl FooClient`: `new`, `sender`, `into_sender`, and the variants' methods.
    fn impl_client(&self) -> TokenStream {
        let krate = &self.args.krate;
        let vis = self.protocol.vis;
        let ident = self.protocol.ident;
        let client = &self.client;
        let methods = self
            .protocol
            .variants
            .iter()
            .filter(|variant| check::has_client_method(self.protocol, variant))
            .map(|variant| self.client_methods(variant));
        quote! {
            // A program uses the methods it needs: the others must not warn when the enum
            // is private. A variant with many fields gives a method with as many
            // parameters.
            #[allow(dead_code, clippy::too_many_arguments)]
            impl #client {
                /// Makes a client that sends through `sender`.
                #[must_use]
                #vis fn new(sender: #krate::Sender<#ident>) -> Self {
                    #client { sender }
                }

                /// The sender that the client sends through.
                #[must_use]
                #vis fn sender(&self) -> &#krate::Sender<#ident> {
                    &self.sender
                }

                /// Returns the sender that the client sends through.
                #[must_use]
                #vis fn into_sender(self) -> #krate::Sender<#ident> {
                    self.sender
                }

                #(#methods)*
            }
        }
    }

    /// The client's methods for one variant: `square` and `try_square` for a call, `stop`
    /// for a one-way variant.
    fn client_methods(&self, variant: &Variant<'_>) -> TokenStream {
        let krate = &self.args.krate;
        let private = &self.private;
        let vis = self.protocol.vis;
        let ident = self.protocol.ident;
        let variant_ident = variant.ident;
        let Some(method) = &variant.client_method else {
            return TokenStream::new();
        };
        let params: Vec<_> = variant.fields.iter().map(|field| &field.param).collect();
        let tys: Vec<_> = variant.fields.iter().map(|field| field.ty).collect();
        let message = match variant.style {
            Style::Unit => quote!(#ident::#variant_ident),
            Style::Tuple => quote!(#ident::#variant_ident(#(#params),*)),
            // The parameters are the fields' names: shorthand, so no lint sees `a: a`.
            Style::Struct => quote!(#ident::#variant_ident { #(#params),* }),
        };
        let path = format!(
            "{}::{}",
            self.protocol.name(),
            syn::ext::IdentExt::unraw(variant.ident)
        );
        let docs: Vec<_> = variant.docs().collect();
        let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        let cfgs: Vec<_> = variant.cfgs().collect();
        let Some(reply) = &variant.reply else {
            let doc = format!(" Sends `{path}`, like `Sender::send`.");
            return quote_spanned! {variant.ident.span()=>
                #[doc = #doc]
                #separator
                #(#docs)*
                #(#cfgs)*
                #[track_caller]
                #vis fn #method(&self #(, #params: #tys)*) -> impl ::core::future::Future<Output = ::core::result::Result<(), #krate::SendError<#ident>>> + ::core::marker::Send + '_ {
                    self.sender.send(#message)
                }
            };
        };
        let try_method = format_ident!(
            "try_{}",
            syn::ext::IdentExt::unraw(method),
            span = method.span()
        );
        let doc = format!(" Calls `{path}` and waits for its reply.");
        let try_doc = format!(
            " Calls `{path}` and waits for its reply, but fails at once with `CallError::Full` instead of waiting for room in the table of calls in flight or in the outgoing buffer."
        );
        let output = quote_spanned! {reply.span()=>
            impl ::core::future::Future<Output = ::core::result::Result<#reply, #krate::CallError>> + ::core::marker::Send + '_
        };
        // The call and the return type are spanned at the reply type, like the assertion in
        // `assert_replies`: a reply type that is not a serde type fails their bounds too,
        // and the errors point there.
        let call = |wait: bool| {
            quote_spanned! {reply.span()=>
                #private::call::<#ident, #reply>(&self.sender, #message, #wait)
            }
        };
        let (call, try_call) = (call(true), call(false));
        let stream_method = format_ident!(
            "{}_stream",
            syn::ext::IdentExt::unraw(method),
            span = method.span()
        );
        let stream_doc = format!(
            " A stream of calls of `{path}`, many in flight from one task: `push` takes the variant's fields (one as itself, several as a tuple, none as `()`) and a tag, and `next` returns each reply with its tag as it arrives. See `CallStream`."
        );
        // The fields as `CallStream::push` takes them, and the message made from them.
        let (fields_ty, fields_pat) = match params.as_slice() {
            [param] => (quote!(#(#tys)*), quote!(#param)),
            _ => (quote!((#(#tys,)*)), quote!((#(#params,)*))),
        };
        let stream = quote_spanned! {reply.span()=>
            #private::call_stream::<#ident, #fields_ty, #reply>(&self.sender, |#fields_pat| #message)
        };
        let stream_output = quote_spanned! {reply.span()=>
            #krate::CallStream<#ident, #fields_ty, #reply>
        };
        quote_spanned! {variant.ident.span()=>
            #[doc = #doc]
            #separator
            #(#docs)*
            #(#cfgs)*
            #vis fn #method(&self #(, #params: #tys)*) -> #output {
                #call
            }

            #[doc = #try_doc]
            #separator
            #(#docs)*
            #(#cfgs)*
            #vis fn #try_method(&self #(, #params: #tys)*) -> #output {
                #try_call
            }

            #[doc = #stream_doc]
            #separator
            #(#docs)*
            #(#cfgs)*
            #[must_use]
            #vis fn #stream_method(&self) -> #stream_output {
                #stream
            }
        }
    }

    /// `Clone`, `Debug`, `From<Sender<Foo>>` and `Deref<Target = Sender<Foo>>` for the
    /// client.
    fn impl_client_traits(&self) -> TokenStream {
        let krate = &self.args.krate;
        let private = &self.private;
        let ident = self.protocol.ident;
        let client = &self.client;
        let name = client.to_string();
        quote! {
            #[automatically_derived]
            impl ::core::clone::Clone for #client {
                fn clone(&self) -> Self {
                    #client {
                        sender: ::core::clone::Clone::clone(&self.sender),
                    }
                }
            }

            #[automatically_derived]
            impl ::core::fmt::Debug for #client {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(#name)
                        .field("sender", &self.sender)
                        .finish_non_exhaustive()
                }
            }

            #[automatically_derived]
            impl ::core::convert::From<#krate::Sender<#ident>> for #client {
                fn from(sender: #krate::Sender<#ident>) -> Self {
                    #client { sender }
                }
            }

            #[automatically_derived]
            impl #private::Client for #client {
                type Protocol = #ident;

                fn from_sender(sender: #krate::Sender<#ident>) -> Self {
                    #client { sender }
                }
            }

            #[automatically_derived]
            impl ::core::ops::Deref for #client {
                type Target = #krate::Sender<#ident>;

                fn deref(&self) -> &#krate::Sender<#ident> {
                    &self.sender
                }
            }
        }
    }
}

impl ToTokens for Generator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let item_enum = self.item_enum();
        let trait_handler = self.trait_handler();
        let struct_client = self.struct_client();
        let impl_client = self.impl_client();
        let impl_protocol = self.impl_protocol();
        let impl_dispatch = self.impl_dispatch();
        let impl_client_traits = self.impl_client_traits();
        let assert_replies = self.assert_replies();
        tokens.extend(quote! {
            #item_enum

            #trait_handler

            #struct_client

            #[allow(unused_qualifications, clippy::absolute_paths)]
            #impl_client

            #[doc(hidden)]
            #[allow(unused_qualifications, clippy::absolute_paths)]
            const _: () = {
                #impl_protocol
                #impl_dispatch
                #impl_client_traits
                #assert_replies
            };
        });
    }
}

/// A type as written, with the spaces of token printing taken out where they read oddly:
/// `Result<u64, MyError>`, for docs.
fn type_to_string(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace("& ", "&")
}

/// Whether `ty` is written exactly `Vec<u8>`, `std::vec::Vec<u8>` or
/// `alloc::vec::Vec<u8>` (with or without a leading `::` on the long forms). Only the
/// syntax is seen: an alias, or a `Vec<u8>` nested in another type (`Option<Vec<u8>>`),
/// is encoded as a sequence; such fields can use `aiosock::Bytes`.
fn is_byte_vec(ty: &Type) -> bool {
    let ty = peel_groups(ty);
    let Type::Path(type_path) = ty else {
        return false;
    };
    if type_path.qself.is_some() {
        return false;
    }
    let path = &type_path.path;
    let segments: Vec<_> = path.segments.iter().collect();
    let Some((last, prefix)) = segments.split_last() else {
        return false;
    };
    let prefix_ok = match prefix {
        [] => path.leading_colon.is_none(),
        [krate, module] => {
            (krate.ident == "std" || krate.ident == "alloc")
                && krate.arguments.is_none()
                && module.ident == "vec"
                && module.arguments.is_none()
        }
        _ => false,
    };
    if !prefix_ok || last.ident != "Vec" {
        return false;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    if args.args.len() != 1 {
        return false;
    }
    let Some(GenericArgument::Type(elem)) = args.args.first() else {
        return false;
    };
    matches!(peel_groups(elem), Type::Path(p) if p.qself.is_none() && p.path.is_ident("u8"))
}

/// Types that come from a `macro_rules!` fragment are wrapped in invisible groups.
fn peel_groups(mut ty: &Type) -> &Type {
    while let Type::Group(group) = ty {
        ty = &group.elem;
    }
    ty
}

/// Whether the user already chose how to encode the field.
fn has_serde_with(serde: &SerdeAttrs) -> bool {
    ["with", "serialize_with", "deserialize_with"]
        .into_iter()
        .any(|key| serde.has(key))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn expand_ok(args: TokenStream, input: TokenStream) -> String {
        let (output, errors) = expand(args, input);
        assert!(errors.is_none(), "{errors:?}");
        output.to_string()
    }

    fn to_worker() -> TokenStream {
        quote! {
            #[derive(Debug, Clone, PartialEq)]
            /// docs
            pub enum ToWorker {
                /// Says hello.
                Greet { name: String },
                #[reply(u64)]
                Square(u64),
                Pair(u8, String),
                #[cfg(unix)]
                Stop,
                Blob(Vec<u8>),
            }
        }
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn enum_gets_serde_derives_before_user_attributes() {
        let out = expand_ok(quote!(), to_worker());
        assert!(out.starts_with(
            "# [derive (:: aiosock :: __private :: serde :: Serialize , :: aiosock :: __private :: serde :: Deserialize)] \
             # [serde (crate = \"::aiosock::__private::serde\")] \
             # [derive (Debug , Clone , PartialEq)] # [doc = r\" docs\"] pub enum ToWorker {"
        ), "{out}");
    }

    #[test]
    fn handler_trait_has_one_method_per_variant() {
        let out = expand_ok(quote!(), to_worker());
        for method in [
            "fn on_greet (& mut self , name : String)",
            "fn on_square (& mut self , _0 : u64)",
            "fn on_pair (& mut self , _0 : u8 , _1 : String)",
            "# [cfg (unix)] fn on_stop (& mut self)",
            "fn on_blob (& mut self , _0 : Vec < u8 >)",
            "fn closed (& mut self)",
        ] {
            assert_eq!(count(&out, method), 1, "{method} in {out}");
        }
        assert!(out.contains("pub trait ToWorkerHandler : :: core :: marker :: Send {"));
        assert!(out.contains(
            "# [doc = \" Called for each `ToWorker::Greet` message.\"] # [doc = \"\"] # [doc = r\" Says hello.\"] fn on_greet"
        ));
    }

    #[test]
    fn dispatch_calls_methods_by_qualified_path() {
        let out = expand_ok(quote!(), to_worker());
        assert!(out.contains("impl < __H : ToWorkerHandler > :: aiosock :: __private :: Dispatch < __H > for ToWorker"));
        for arm in [
            "Self :: Greet { name : __0 } => < __H as ToWorkerHandler > :: on_greet (__handler , __0) . await ,",
            "Self :: Pair (__0 , __1) => < __H as ToWorkerHandler > :: on_pair (__handler , __0 , __1) . await ,",
            "# [cfg (unix)] Self :: Stop => < __H as ToWorkerHandler > :: on_stop (__handler) . await ,",
            "< __H as ToWorkerHandler > :: closed (__handler)",
        ] {
            assert!(out.contains(arm), "{arm} in {out}");
        }
    }

    #[test]
    fn reply_attributes_are_removed_from_the_enum() {
        let (out, errors) = expand(
            quote!(),
            quote! {
                #[reply(u8)]
                #[derive(Debug)]
                enum E {
                    #[reply(u64)] #[doc = "x"] A(#[reply] u8, u16),
                    #[reply(u8)] #[reply(u16)] B { #[reply(u8)] b: u8 },
                    #[reply] C,
                }
            },
        );
        assert_eq!(errors.into_iter().flatten().count(), 5);
        let out = out.to_string();
        assert!(!out.contains("reply ("), "{out}");
        assert!(!out.contains("# [reply]"), "{out}");
        assert!(out.contains(
            "# [derive (Debug)] enum E { # [doc = \"x\"] A (u8 , u16) , B { b : u8 } , C , }"
        ));
    }

    #[test]
    fn handler_methods_of_calls_return_the_reply() {
        let out = expand_ok(
            quote!(),
            quote! {
                pub enum E {
                    #[reply(Result<u64, MyError>)] Square(u64),
                    #[reply(())] Ping,
                    Stop,
                }
            },
        );
        for method in [
            "fn on_square (& mut self , _0 : u64) -> impl :: core :: future :: Future < Output = Result < u64 , MyError > > + :: core :: marker :: Send ;",
            "fn on_ping (& mut self) -> impl :: core :: future :: Future < Output = () > + :: core :: marker :: Send ;",
            "fn on_stop (& mut self) -> impl :: core :: future :: Future < Output = () > + :: core :: marker :: Send ;",
        ] {
            assert_eq!(count(&out, method), 1, "{method} in {out}");
        }
        assert!(out.contains(
            "# [doc = \" Called for each `E::Square` message.\"] # [doc = \"\"] # [doc = \" A call: what the method returns is sent back as the reply, a `Result<u64, MyError>`.\"] fn on_square"
        ), "{out}");
    }

    #[test]
    fn dispatch_drops_replies_and_dispatch_answer_encodes_them() {
        let out = expand_ok(quote!(), to_worker());
        for arm in [
            // `dispatch`
            "Self :: Square (__0) => { let _ = < __H as ToWorkerHandler > :: on_square (__handler , __0) . await ; }",
            // `dispatch_answer`
            "Self :: Square (__0) => { let __reply = < __H as ToWorkerHandler > :: on_square (__handler , __0) . await ; :: aiosock :: __private :: Answer :: of (& __reply) }",
            "Self :: Pair (__0 , __1) => { < __H as ToWorkerHandler > :: on_pair (__handler , __0 , __1) . await ; :: aiosock :: __private :: Answer :: none () }",
            "# [cfg (unix)] Self :: Stop => { < __H as ToWorkerHandler > :: on_stop (__handler) . await ; :: aiosock :: __private :: Answer :: none () }",
        ] {
            assert_eq!(count(&out, arm), 1, "{arm} in {out}");
        }
        assert!(out.contains(
            "fn dispatch_answer (self , __handler : & mut __H ,) -> impl :: core :: future :: Future < Output = :: aiosock :: __private :: Answer > + :: core :: marker :: Send"
        ));
    }

    #[test]
    fn evolution_items_follow_the_variants_their_cfgs_and_added() {
        let out = expand_ok(
            quote!(),
            quote! { enum E { A, #[cfg(x)] B(u8), #[added] C { c: u8 }, #[added] #[cfg(y)] D } },
        );
        for item in [
            "const VARIANT_COUNT : :: core :: primitive :: usize = { let mut __n = 0usize ; \
             { __n += 1 ; } # [cfg (x)] { __n += 1 ; } { __n += 1 ; } # [cfg (y)] { __n += 1 ; } __n } ;",
            "let mut __all = [\"\" ; < E as :: aiosock :: __private :: Protocol > :: VARIANT_COUNT] ; \
             let mut __i = 0usize ; { __all [__i] = \"A\" ; __i += 1 ; } \
             # [cfg (x)] { __all [__i] = \"B\" ; __i += 1 ; } { __all [__i] = \"C\" ; __i += 1 ; } \
             # [cfg (y)] { __all [__i] = \"D\" ; __i += 1 ; } let _ = __i ; __all } ;",
            // Only the variants before the first `#[added]` are the baseline.
            "const BASELINE : :: core :: primitive :: usize = { let mut __n = 0usize ; \
             { __n += 1 ; } # [cfg (x)] { __n += 1 ; } __n } ;",
            "Self :: A { .. } => 0 ,",
            "# [cfg (y)] Self :: D { .. } => { let mut __i = 0usize ; { __i += 1 ; } \
             # [cfg (x)] { __i += 1 ; } { __i += 1 ; } __i }",
        ] {
            assert!(out.contains(item), "{item} in {out}");
        }
        assert!(
            !out.contains("added"),
            "the attribute is the macro's own: {out}"
        );
    }

    #[test]
    fn has_calls_follows_the_variants_and_their_cfgs() {
        let has_calls = |input| {
            let out = expand_ok(quote!(), input);
            let start = out.find("const HAS_CALLS").expect("HAS_CALLS");
            let end = start
                + out[start..]
                    .find("# [doc (hidden)] const VARIANT_COUNT")
                    .expect("end");
            out[start..end].to_owned()
        };
        assert!(
            has_calls(quote! { enum E { A, B(u8) } })
                .starts_with("const HAS_CALLS : :: core :: primitive :: bool = false ;")
        );
        assert!(
            has_calls(quote! { enum E { A, #[cfg(x)] #[reply(u8)] B(u8), #[reply(u8)] C } })
                .starts_with("const HAS_CALLS : :: core :: primitive :: bool = true ;")
        );
        assert_eq!(
            has_calls(
                quote! { enum E { A, #[cfg(x)] #[reply(u8)] B(u8), #[cfg(y)] #[reply(u8)] C } }
            ),
            "const HAS_CALLS : :: core :: primitive :: bool = { let mut __has_calls = false ; \
             # [cfg (x)] { __has_calls = true ; } # [cfg (y)] { __has_calls = true ; } __has_calls } ; "
        );
    }

    #[test]
    fn self_in_a_reply_is_reported_and_expanded_as_the_enum() {
        let (out, errors) = expand(
            quote!(),
            quote! { enum Tree { #[reply(Vec<(Self, u8)>)] A } },
        );
        assert_eq!(errors.into_iter().flatten().count(), 1);
        let out = out.to_string();
        assert!(!out.contains("Self ,"), "{out}");
        assert!(out.contains("Output = Vec < (Tree , u8) >"), "{out}");
        assert!(
            out.contains("__aiosock_assert_reply :: < Vec < (Tree , u8) > > ()"),
            "{out}"
        );
    }

    #[test]
    fn reply_types_are_asserted_to_be_serde_types() {
        let out = expand_ok(quote!(), to_worker());
        assert!(out.contains("fn __aiosock_assert_reply < __R : :: aiosock :: __private :: serde :: Serialize + :: aiosock :: __private :: serde :: de :: DeserializeOwned + :: core :: marker :: Send + 'static , > ()"), "{out}");
        assert!(
            out.contains(
                "fn __aiosock_assert_replies () { __aiosock_assert_reply :: < u64 > () ; }"
            ),
            "{out}"
        );
        // No calls, no assertion.
        let out = expand_ok(quote!(), quote! { enum E { A } });
        assert!(!out.contains("__aiosock_assert_reply"), "{out}");
    }

    #[test]
    fn client_has_a_method_per_variant_and_a_try_method_per_call() {
        let out = expand_ok(quote!(), to_worker());
        assert!(out.contains(
            "pub struct ToWorkerClient { sender : :: aiosock :: Sender < ToWorker > , }"
        ));
        for item in [
            "pub fn new (sender : :: aiosock :: Sender < ToWorker >) -> Self { ToWorkerClient { sender } }",
            "pub fn sender (& self) -> & :: aiosock :: Sender < ToWorker > { & self . sender }",
            "pub fn into_sender (self) -> :: aiosock :: Sender < ToWorker > { self . sender }",
            "# [doc = \" Calls `ToWorker::Square` and waits for its reply.\"] \
             pub fn square (& self , _0 : u64) -> impl :: core :: future :: Future < Output = :: core :: result :: Result < u64 , :: aiosock :: CallError >> + :: core :: marker :: Send + '_ { \
             :: aiosock :: __private :: call :: < ToWorker , u64 > (& self . sender , ToWorker :: Square (_0) , true) }",
            "pub fn try_square (& self , _0 : u64) -> impl :: core :: future :: Future < Output = :: core :: result :: Result < u64 , :: aiosock :: CallError >> + :: core :: marker :: Send + '_ { \
             :: aiosock :: __private :: call :: < ToWorker , u64 > (& self . sender , ToWorker :: Square (_0) , false) }",
            "# [doc = \" Sends `ToWorker::Greet`, like `Sender::send`.\"] # [doc = \"\"] # [doc = r\" Says hello.\"] # [track_caller] \
             pub fn greet (& self , name : String) -> impl :: core :: future :: Future < Output = :: core :: result :: Result < () , :: aiosock :: SendError < ToWorker >> > + :: core :: marker :: Send + '_ { \
             self . sender . send (ToWorker :: Greet { name }) }",
            "# [cfg (unix)] # [track_caller] pub fn stop (& self) ->",
            "pub fn pair (& self , _0 : u8 , _1 : String) ->",
            "self . sender . send (ToWorker :: Pair (_0 , _1))",
            "impl :: core :: clone :: Clone for ToWorkerClient",
            "impl :: core :: fmt :: Debug for ToWorkerClient",
            "f . debug_struct (\"ToWorkerClient\") . field (\"sender\" , & self . sender) . finish_non_exhaustive ()",
            "impl :: core :: convert :: From < :: aiosock :: Sender < ToWorker >> for ToWorkerClient",
            "impl :: core :: ops :: Deref for ToWorkerClient { type Target = :: aiosock :: Sender < ToWorker > ;",
        ] {
            assert_eq!(count(&out, item), 1, "{item} in {out}");
        }
        assert!(!out.contains("try_greet"), "{out}");
        assert!(!out.contains("try_pair"), "{out}");
    }

    #[test]
    fn client_methods_have_the_enums_visibility_and_raw_names() {
        let out = expand_ok(
            quote!(),
            quote! { pub(crate) enum r#Match { #[reply(u8)] r#Match, r#type { r#type: u8 }, Try } },
        );
        for item in [
            "pub (crate) struct MatchClient",
            "pub (crate) fn new (sender",
            "pub (crate) fn r#match (& self)",
            "pub (crate) fn try_match (& self)",
            "r#Match :: r#Match , true",
            "pub (crate) fn r#type (& self , r#type : u8)",
            "self . sender . send (r#Match :: r#type { r#type })",
            "pub (crate) fn r#try (& self)",
        ] {
            assert_eq!(count(&out, item), 1, "{item} in {out}");
        }
        let out = expand_ok(quote!(), quote! { enum E { A } });
        assert!(out.contains("struct EClient"));
        // A private enum gets private methods.
        assert!(out.contains("# [track_caller] fn a (& self)"), "{out}");
    }

    #[test]
    fn client_leaves_out_the_methods_it_reported() {
        let (out, errors) = expand(
            quote!(),
            quote! { enum E { New, #[reply(u8)] Square, TrySquare(u8), Self_, Other } },
        );
        assert_eq!(errors.into_iter().flatten().count(), 3);
        let out = out.to_string();
        assert_eq!(count(&out, "fn new"), 1, "{out}");
        assert_eq!(count(&out, "fn try_square"), 1, "{out}");
        assert!(!out.contains("fn try_try_square"), "{out}");
        assert!(out.contains("fn other (& self)"), "{out}");
        // The handler still has every method.
        for method in [
            "on_new",
            "on_square",
            "on_try_square",
            "on_self",
            "on_other",
        ] {
            assert!(out.contains(&format!("fn {method} (")), "{method} in {out}");
        }
    }

    #[test]
    fn protocol_impl_names_the_enum() {
        let out = expand_ok(quote!(), quote! { enum r#Match { A } });
        assert!(out.contains("impl :: aiosock :: __private :: Protocol for r#Match"));
        assert!(out.contains("const NAME : & 'static :: core :: primitive :: str = \"Match\" ;"));
        assert!(out.contains("trait MatchHandler"));
    }

    #[test]
    fn only_byte_vectors_get_the_bytes_encoding() {
        let out = expand_ok(
            quote!(),
            quote! {
                enum E {
                    A(Vec<u8>, std::vec::Vec<u8>, ::std::vec::Vec<u8>, alloc::vec::Vec<u8>),
                    B { x: Option<Vec<u8>>, y: Vec<u16>, z: Box<[u8]>, w: ::Vec<u8>, v: core::Vec<u8> },
                    C(#[serde(serialize_with = "s", deserialize_with = "d")] Vec<u8>),
                }
            },
        );
        assert_eq!(
            count(&out, "# [serde (with = \"::aiosock::__private::bytes\")]"),
            4,
            "{out}"
        );
    }

    #[test]
    fn crate_argument_replaces_every_path() {
        let out = expand_ok(quote! { crate = "crate::reexport::aiosock" }, to_worker());
        let rest = out
            .replace("crate :: reexport :: aiosock ::", "")
            .replace("crate::reexport::aiosock::", "");
        assert!(!rest.contains("aiosock ::"), "{out}");
        assert!(!rest.contains("aiosock::__private"), "{out}");
        assert!(out.contains("crate :: reexport :: aiosock :: __private :: Protocol"));
        assert!(out.contains("\"crate::reexport::aiosock::__private::serde\""));
        assert!(out.contains("\"crate::reexport::aiosock::__private::bytes\""));
        assert!(out.contains("crate :: reexport :: aiosock :: Sender < ToWorker >"));
        assert!(out.contains("crate :: reexport :: aiosock :: CallError"));
        assert!(out.contains("crate :: reexport :: aiosock :: SendError < ToWorker >"));
    }

    #[test]
    fn generic_enum_falls_back_to_the_item() {
        let input = quote! { enum E<T> { A(T) } };
        let (out, errors) = expand(quote!(), input.clone());
        assert!(errors.is_some());
        assert_eq!(out.to_string(), input.to_string());
    }

    #[test]
    fn generic_enum_falls_back_without_serde_and_reply_attributes() {
        let (out, errors) = expand(
            quote!(),
            quote! {
                #[serde(untagged)] #[derive(Debug)]
                enum E<T> { #[serde(other)] #[reply(u8)] A(#[serde(flatten)] #[doc = "x"] T) }
            },
        );
        assert!(errors.is_some());
        assert_eq!(
            out.to_string(),
            quote! { #[derive(Debug)] enum E<T> { A(#[doc = "x"] T) } }.to_string()
        );
    }

    #[test]
    fn struct_falls_back_to_the_item() {
        let input = quote! { struct S; };
        let (out, errors) = expand(quote! { crate = "x" }, input.clone());
        assert!(errors.is_some());
        assert_eq!(out.to_string(), input.to_string());
    }

    #[test]
    fn colliding_variants_still_expand() {
        let (out, errors) = expand(quote! { nope }, quote! { enum E { FooBar(u8), Foo_Bar } });
        assert!(errors.is_some());
        let out = out.to_string();
        assert_eq!(count(&out, "fn on_foo_bar"), 1, "{out}");
        assert!(out.contains("Self :: Foo_Bar { .. } => :: core :: unreachable ! () ,"));
        assert!(out.contains("trait EHandler"));
    }

    #[test]
    fn output_has_errors_as_compile_error() {
        let out = protocol(quote!(), quote! { enum E {} }).to_string();
        assert!(out.contains("compile_error !"), "{out}");
        assert!(out.contains("trait EHandler"), "{out}");
    }
}
