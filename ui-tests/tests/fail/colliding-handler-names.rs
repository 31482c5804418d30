#[aiosock::protocol]
#[allow(non_camel_case_types)]
pub enum Command {
    FooBar,
    Foo_Bar(u8),
}

fn main() {}
