#[aiosock::protocol(crate = "not_a_crate::aiosock")]
pub enum Command {
    Start,
}

fn main() {}
