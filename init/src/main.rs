//! init: see the crate library.

fn main() {
    println!("mesh-init {}", env!("CARGO_PKG_VERSION"));
}
