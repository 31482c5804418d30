//! Fuzzes one payload's decode against the decode budget's invariants, with a counting
//! allocator: whatever the bytes, decoding spends at most `budget × len + ALLOWANCE` units,
//! and allocates at most `MEMORY_PER_UNIT` bytes per unit spent (plus its error's message
//! when it fails). A crash here is an amplification, not only a panic.

#![no_main]

use aiosock::__private::wire::{ALLOWANCE, ERROR_SLACK, MEMORY_PER_UNIT, decode_payload_spending};
use aiosock::__private::{CountingAlloc, peak_of};
use aiosock_fuzz::Msg;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the budget (1 to 64 units per byte); the rest is the payload.
    let Some((&knob, payload)) = data.split_first() else {
        return;
    };
    let per_byte = usize::from(knob % 64) + 1;
    let ((result, spent), peak) = peak_of(|| decode_payload_spending::<Msg>(payload, per_byte));
    let units = payload.len() * per_byte + ALLOWANCE;
    assert!(spent <= units, "spent {spent} of {units} units");
    let slack = if result.is_err() { ERROR_SLACK } else { 0 };
    assert!(
        peak <= MEMORY_PER_UNIT * spent + slack,
        "{peak} bytes for {spent} units ({result:?})"
    );
});
