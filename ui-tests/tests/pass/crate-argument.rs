// `crate = "..."` points the generated code at a re-export of aiosock. The path is
// resolved where the enum is, like any path written there: a relative path works where
// its first segment is in scope, and a `crate::` path works anywhere.

use aiosock::Protocol;

mod reexport {
    pub use aiosock;
}

#[aiosock::protocol(crate = "reexport::aiosock")]
pub enum AtRoot {
    Blob(Vec<u8>),
}

mod nested {
    #[aiosock::protocol(crate = "crate::reexport::aiosock")]
    pub enum Nested {
        Blob(Vec<u8>),
    }

    #[aiosock::protocol(crate = "super::reexport::aiosock")]
    pub enum Relative {
        Unit,
    }
}

fn main() {
    assert_eq!(AtRoot::NAME, "AtRoot");
    assert_eq!(nested::Nested::NAME, "Nested");
    assert_eq!(nested::Relative::NAME, "Relative");
}
