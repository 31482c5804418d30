#[aiosock::protocol(crate = "aiosock", krate = "aiosock", crate = "aiosock")]
#[allow(non_camel_case_types)]
pub enum Broken<T> {
    FooBar(T),
    Foo_Bar,
    Baz(#[cfg(unix)] u8),
}

fn main() {}
