#[aiosock::protocol]
pub enum Command {
    New,
    #[reply(u64)]
    Square(u64),
    TrySquare(u64),
    SquareStream(u64),
    #[reply(u64)]
    TryCube(u64),
    #[reply(u64)]
    CubeStream(u64),
}

fn main() {}
