#[aiosock::protocol]
pub enum Command {
    Start,
    #[added(2)]
    Pause,
    #[added]
    #[added]
    Stop,
}

fn main() {}
