//! Running a test's async body where the Google clients' debug-build futures fit (shared with
//! `bmac-providers/tests/gcp_build.rs`).

/// Runs a test's body on a thread with a 16 MiB stack.
///
/// The official clients' request futures are tens of KiB each in debug builds, and a test that
/// awaits many of them inline overflows the test harness's 2 MiB threads (a workspace build with
/// every feature makes them larger still).
pub fn run(test: impl std::future::Future<Output = ()> + Send + 'static) {
    let test = Box::pin(test);
    let thread = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(test)
        })
        .expect("a test thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
