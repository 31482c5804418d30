#[aiosock::protocol]
pub enum Command {
    Square(u64),
    #[serde(untagged)]
    Raw(String),
}

fn main() {}
