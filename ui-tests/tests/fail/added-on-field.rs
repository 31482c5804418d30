#[aiosock::protocol]
pub enum Command {
    Start(#[added] u64),
}

fn main() {}
