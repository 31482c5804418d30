#[aiosock::protocol]
#[serde(untagged)]
pub enum Reply {
    Number(u64),
    Text(String),
}

fn main() {}
