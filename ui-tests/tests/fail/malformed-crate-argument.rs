#[aiosock::protocol(crate = aiosock)]
pub enum Command {
    Start,
}

fn main() {}
