#[aiosock::protocol]
pub enum Borrowed<'a> {
    Name(&'a str),
}

fn main() {}
