//! `kappa-operator`: the StreamJob controller process.

fn main() {
    println!("kappa-operator: not wired yet");
}
