#[aiosock::protocol]
pub fn handle() {}

fn main() {}
