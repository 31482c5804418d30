#[aiosock::protocol(rename_all = "snake_case")]
pub enum Command {
    Start,
}

fn main() {}
