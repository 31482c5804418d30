#[aiosock::protocol]
pub enum Command {
    Start,
    #[added]
    Pause,
    Stop,
}

fn main() {}
