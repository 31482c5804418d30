#[aiosock::protocol]
#[serde(tag = "type", content = "data")]
pub enum Command {
    Square(u64),
    Stop,
}

fn main() {}
