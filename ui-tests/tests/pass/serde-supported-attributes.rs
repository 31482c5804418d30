// The serde attributes that bincode can carry compile and round-trip: `skip` (left out on
// both sides, filled with `Default` on receipt), `default`, `rename_all` and `rename`
// (bincode writes no names), and `with`.
//
// The round trip uses aiosock's hidden frame hooks (`wire::encode_one`/`decode_one`),
// which encode and decode exactly as a `Sender` and a `Receiver` do, without a runtime.

use std::time::Duration;

use aiosock::__private::wire::{decode_one, encode_one};

/// Writes a `Duration` as whole milliseconds. A real crate would name its own serde; this
/// one has no serde dependency on purpose, so it borrows aiosock's hidden re-export.
mod millis {
    use std::time::Duration;

    use aiosock::__private::serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Run {
        program: String,
        #[serde(skip)]
        local_attempts: u32,
        #[serde(default)]
        priority: u8,
        #[serde(with = "millis")]
        timeout: Duration,
        #[serde(rename = "bytes")]
        input: Vec<u8>,
    },
    Note(#[serde(skip_serializing, skip_deserializing)] Option<String>, u64),
    #[serde(rename = "halt")]
    Stop,
}

fn round_trip(job: &Job) -> Job {
    const MAX: usize = 1 << 16;
    let mut frame = Vec::new();
    encode_one(&mut frame, job, MAX).expect("encode");
    let (decoded, len) = decode_one::<Job>(&frame, MAX)
        .expect("decode")
        .expect("a whole frame");
    assert_eq!(len, frame.len());
    decoded
}

fn main() {
    let run = Job::Run {
        program: "make".into(),
        local_attempts: 3,
        priority: 7,
        timeout: Duration::from_millis(1500),
        input: vec![1, 2, 3],
    };
    assert_eq!(
        round_trip(&run),
        Job::Run {
            program: "make".into(),
            local_attempts: 0,
            priority: 7,
            timeout: Duration::from_millis(1500),
            input: vec![1, 2, 3],
        }
    );
    assert_eq!(
        round_trip(&Job::Note(Some("local".into()), 9)),
        Job::Note(None, 9)
    );
    assert_eq!(round_trip(&Job::Stop), Job::Stop);
}
