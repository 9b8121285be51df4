fn main() -> anyhow::Result<()> {
    let object = sgwall::datapath::object::bytes()?;
    println!("eBPF object: {} bytes", object.len());
    Ok(())
}
