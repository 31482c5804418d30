#[aiosock::protocol]
pub enum Command {
    Square(#[reply(u64)] u64),
}

fn main() {}
