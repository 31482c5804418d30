pub struct NotSerde;

#[aiosock::protocol]
pub enum Command {
    #[reply(Option<NotSerde>)]
    Get(u64),
}

fn main() {}
