//! Variants added at the end, marked `#[added]`, with calls and `#[cfg]`s among them: the
//! protocol's evolution items count only what is compiled in.

use aiosock::Protocol;

#[aiosock::protocol]
#[derive(Debug)]
pub enum Command {
    Start,
    #[cfg(any())]
    Never,
    #[reply(u64)]
    Count,
    #[added]
    Pause,
    #[added]
    #[cfg(any())]
    NeverAdded,
    #[added]
    #[reply(String)]
    Status { verbose: bool },
}

const _: () = assert!(Command::VARIANT_COUNT == 4);
const _: () = assert!(Command::BASELINE == 2);

fn main() {
    assert_eq!(Command::VARIANTS, ["Start", "Count", "Pause", "Status"]);
    assert_eq!(Command::Pause.variant_index(), 2);
    assert_eq!(Command::Status { verbose: true }.variant_index(), 3);
    assert_eq!(Command::VARIANT_FINGERPRINTS.len(), 4);
}
