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
    #[reply(Result<u64, String>)]
    Call(u64),
}

mod nested {
    #[aiosock::protocol(crate = "crate::reexport::aiosock")]
    pub enum Nested {
        Blob(Vec<u8>),
    }

    #[aiosock::protocol(crate = "super::reexport::aiosock")]
    pub enum Relative {
        Unit,
        #[reply(())]
        Call,
    }
}

/// The clients name the re-export too; never called.
#[allow(dead_code)]
fn clients(root: &AtRootClient, relative: &nested::RelativeClient) {
    let _calls = (root.call(1), root.try_call(2), relative.call(), relative.try_call());
    let _sends = (root.blob(Vec::new()), relative.unit());
    let _sender: &reexport::aiosock::Sender<AtRoot> = root.sender();
    let _client = AtRootClient::from(root.clone().into_sender());
}

fn main() {
    assert_eq!(AtRoot::NAME, "AtRoot");
    assert_eq!(nested::Nested::NAME, "Nested");
    assert_eq!(nested::Relative::NAME, "Relative");
    assert!(AtRoot::HAS_CALLS && nested::Relative::HAS_CALLS && !nested::Nested::HAS_CALLS);
}
