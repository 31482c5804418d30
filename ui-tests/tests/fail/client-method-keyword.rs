#[aiosock::protocol]
pub enum Command {
    Self_,
}

fn main() {}
