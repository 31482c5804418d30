//! The `#[aiosock::protocol]` attribute macro.
//!
//! Do not depend on this crate directly: use the macro through `aiosock`, which
//! re-exports it as `aiosock::protocol` and documents it, with the list of everything it
//! generates. The generated code names the runtime only through `aiosock::__private`, and
//! the two crates are pinned to the same exact version.
//!
//! Layout, one phase per file: `attr` reads the macro's arguments, the `#[reply(T)]` of
//! each call variant and the keys of the user's `#[serde]` attributes, `ast` builds a
//! borrowed view of the enum, `check` applies the rules (among them, no serde attribute
//! that bincode cannot carry, `#[reply]` only on variants, client method names that can be
//! generated) and `ctxt` gathers every error they find, `expand` generates the output
//! (with `case` for method names and `fingerprint` for the protocol hash).

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;
mod fingerprint;

use proc_macro::TokenStream;

/// Turns an enum into an aiosock message type. Documented at its re-export,
/// `aiosock::protocol`.
///
/// On an error, the user's item is still emitted (with the handler trait and impls when
/// the enum allows it), next to one `compile_error!` per problem.
#[proc_macro_attribute]
pub fn protocol(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::protocol(args.into(), input.into()).into()
}
