#[aiosock::protocol]
#[serde(tag = "type")]
pub enum Command {
    Greet { name: String },
    Stop,
}

fn main() {}
