#[aiosock::protocol]
pub enum Command {
    #[reply(u64)]
    #[reply(u32)]
    Square(u64),
}

fn main() {}
