//! webhook: see the crate library.

fn main() {
    println!("mesh-webhook {}", env!("CARGO_PKG_VERSION"));
}
