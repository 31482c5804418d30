#[aiosock::protocol(crate = "aiosock", krate = "aiosock", crate = "aiosock")]
#[allow(non_camel_case_types)]
#[serde(tag = "kind")]
pub enum Broken<T> {
    FooBar(T),
    Foo_Bar,
    Baz(#[cfg(unix)] u8),
    Run {
        #[serde(flatten)]
        options: T,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout: Option<u64>,
    },
    #[serde(other)]
    Unknown,
}

fn main() {}
