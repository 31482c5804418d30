#[aiosock::protocol]
pub enum Nothing {}

fn main() {}
