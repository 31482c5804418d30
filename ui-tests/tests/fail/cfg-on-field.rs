#[aiosock::protocol]
pub enum Command {
    Start(#[cfg(unix)] u32),
}

fn main() {}
