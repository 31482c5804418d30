#[aiosock::protocol]
pub enum Tree {
    #[reply(Vec<Self>)]
    Children,
}

fn main() {}
