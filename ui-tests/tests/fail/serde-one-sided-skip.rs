#[aiosock::protocol]
pub enum Command {
    Run {
        #[serde(skip_serializing)]
        attempts: u32,
        program: String,
    },
    Log(#[serde(default, skip_deserializing)] u64, String),
}

fn main() {}
