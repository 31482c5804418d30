use std::collections::HashMap;

#[aiosock::protocol]
pub enum Command {
    Run {
        program: String,
        #[serde(flatten)]
        env: HashMap<String, String>,
    },
}

fn main() {}
