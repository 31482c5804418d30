#[aiosock::protocol]
pub enum Command {
    Square(u64),
    #[serde(skip_deserializing)]
    LocalOnly(u64),
    Cube(u64),
}

fn main() {}
