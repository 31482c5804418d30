#[aiosock::protocol(crate = "aiosock", crate = "aiosock")]
pub enum Command {
    Start,
}

fn main() {}
