#[aiosock::protocol]
#[reply(u64)]
pub enum Command {
    Square(u64),
}

fn main() {}
