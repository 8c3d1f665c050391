// Temporary: runs tests/exec.rs until tests/main.rs has `mod exec;` (to be deleted).
#[path = "../../tests/exec.rs"]
mod exec;
#[path = "../../tests/harness/mod.rs"]
mod harness;
