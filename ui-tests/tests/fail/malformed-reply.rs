#[aiosock::protocol]
pub enum Command {
    #[reply]
    Bare,
    #[reply = u64]
    NameValue,
    #[reply(not a type)]
    NotAType,
    #[reply(u64, u32)]
    TwoTypes,
}

fn main() {}
