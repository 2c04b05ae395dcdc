//! Shared harness of the fuzz targets: `fuzz_target!(check)` makes a target either a libFuzzer
//! entry point (`--features libfuzzer`: `LLVMFuzzerTestOneInput`, a panic aborts so libFuzzer
//! records the input as a crash) or a replay binary that runs `check` over the files and
//! directories given on the command line (the corpus, or crash files) and fails on the first
//! panic.

#[cfg(feature = "collector")]
pub mod collector;

/// Run `check` over every file given, or every file in every directory given. Returns how many.
pub fn replay(check: fn(&[u8])) -> usize {
    let mut n = 0;
    for arg in std::env::args().skip(1) {
        let path = std::path::PathBuf::from(arg);
        let mut files: Vec<std::path::PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()
        } else {
            vec![path]
        };
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            eprintln!("replay {}", f.display());
            check(&data);
            n += 1;
        }
    }
    n
}

/// libFuzzer entry point or replay `main` for `check`.
#[macro_export]
macro_rules! fuzz_target {
    ($check:path) => {
        #[cfg(feature = "libfuzzer")]
        #[no_mangle]
        pub extern "C" fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> i32 {
            static HOOK: std::sync::Once = std::sync::Once::new();
            HOOK.call_once(|| {
                let default = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    default(info);
                    std::process::abort();
                }));
            });
            let input: &[u8] = if size == 0 || data.is_null() {
                &[]
            } else {
                // SAFETY: libFuzzer passes a buffer of `size` readable bytes, valid for this call.
                unsafe { std::slice::from_raw_parts(data, size) }
            };
            $check(input);
            0
        }

        #[cfg(not(feature = "libfuzzer"))]
        fn main() {
            let n = $crate::replay($check);
            println!("{}: {n} inputs replayed, no failure", env!("CARGO_BIN_NAME"));
        }
    };
}
