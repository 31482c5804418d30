#[aiosock::protocol]
pub enum Wrapper<T> {
    Value(T),
}

fn main() {}
