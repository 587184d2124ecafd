//! byom-server.
fn main() {}
