//! `sqlx::migrate!` embeds app/migrations, but cargo does not know the crate reads that directory:
//! without this, adding a migration would not rebuild the service and the binary would lack it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
