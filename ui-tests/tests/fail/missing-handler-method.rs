#[aiosock::protocol]
pub enum ToWorker {
    Greet { name: String },
    Square(u64),
}

pub struct Worker;

impl ToWorkerHandler for Worker {
    async fn on_greet(&mut self, name: String) {
        drop(name);
    }
}

fn main() {}
