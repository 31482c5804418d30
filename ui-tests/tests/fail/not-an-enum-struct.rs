#[aiosock::protocol]
pub struct Greeting {
    pub name: String,
}

fn main() {}
