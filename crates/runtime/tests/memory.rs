//! `aiaa_runtime::memory`: memory freed in a malloc arena stays resident until the trimmer
//! runs, and the trimmer hands it back. Its own test binary: the RSS it measures is this
//! process's, so nothing else may allocate beside it.

use std::time::{Duration, Instant};

use aiaa_runtime::memory::{resident_bytes, trim_when_quiet};

const MIB: u64 = 1 << 20;

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn freed_arena_memory_goes_back_to_the_system_after_a_quiet_second() {
    // 3,000 blocks of 96 KiB (under malloc's mmap threshold, so they come from an arena, as
    // a request's medium buffers do), allocated on a thread of their own and written.
    let blocks = std::thread::spawn(|| {
        (0..3000)
            .map(|i| vec![(i % 251) as u8 + 1; 96 << 10])
            .collect::<Vec<Vec<u8>>>()
    })
    .join()
    .unwrap();
    let held = resident_bytes();
    // Free all but the last block: it keeps the arena's top in use, as a live allocation
    // does in a service, so malloc's own trimming of the top cannot give the rest back.
    let mut blocks = blocks;
    let last = blocks.pop().unwrap();
    drop(blocks);
    let freed = resident_bytes();
    assert!(
        freed + 200 * MIB > held,
        "precondition: freeing the blocks alone should leave them resident (held {} MiB, after free {} MiB)",
        held / MIB,
        freed / MIB
    );

    let asked = Instant::now();
    trim_when_quiet();
    let deadline = asked + Duration::from_secs(10);
    let trimmed = loop {
        let now = resident_bytes();
        if now + 200 * MIB < freed || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        trimmed + 200 * MIB < freed,
        "the trimmer did not hand the freed ~280 MiB back: {} MiB before, {} MiB after {:?}",
        freed / MIB,
        trimmed / MIB,
        asked.elapsed()
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "trimmed before the quiet second"
    );
    assert_eq!(last[0], (2999 % 251) as u8 + 1);
}
