#[aiosock::protocol]
pub enum Command {
    Square(u64),
    #[serde(other)]
    Unknown,
}

fn main() {}
