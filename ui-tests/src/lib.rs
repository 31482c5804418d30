//! Compile-fail and compile-pass tests of `#[aiosock::protocol]`, run by `tests/ui.rs`
//! with trybuild.
//!
//! `tests/fail/*.rs` holds one mistake per file, named after the mistake, with the
//! expected compiler output beside it in a `.stderr` file. `tests/pass/*.rs` holds inputs
//! that are valid but easy to get wrong. After a deliberate change to an error message,
//! regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p aiosock-ui-tests` and review the diff like code.
//!
//! The crate depends on `aiosock` only (no serde), so the pass cases also check that
//! users need no serde dependency.
