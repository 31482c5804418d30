#[aiosock::protocol]
pub enum Command {
    New,
    #[reply(u64)]
    Square(u64),
    TrySquare(u64),
}

fn main() {}
