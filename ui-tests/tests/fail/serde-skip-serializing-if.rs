#[aiosock::protocol]
pub enum Command {
    Run {
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout: Option<u64>,
        program: String,
    },
}

fn main() {}
