//! The `byom` command-line tool.
fn main() {
    println!("byom {}", byom_core::VERSION);
}
