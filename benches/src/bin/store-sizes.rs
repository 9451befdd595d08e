//! `store-sizes`: what a Fleetgate database file holds, per table, as a markdown table for
//! docs/benchmarks.md (issue 17's record sizes). Used by `benches/scale.sh` after the server
//! stopped (redb opens a file in one process at a time).
//!
//! store-sizes DB_FILE [--devices N] [--compact]
//!
//! Per table: entries, key and value bytes (a value is the version byte + JSON record, or empty
//! for an index entry), their mean per entry, and with `--devices` per enrolled device; then
//! redb's pages and fragmentation, and the file's length against the logical bytes. With
//! `--compact`, then compacts the file (`fleetgate_storage::sizes::compact`) and prints its
//! length after, and how long that took.

use std::path::PathBuf;

use fleetgate_storage::sizes;

fn usage() -> ! {
    eprintln!("usage: store-sizes DB_FILE [--devices N] [--compact]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        usage()
    };
    let (mut devices, mut compact): (Option<u64>, bool) = (None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--devices" => {
                devices = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| usage()),
                );
            }
            "--compact" => compact = true,
            _ => usage(),
        }
    }
    let fail = |e: &dyn std::fmt::Display| -> ! {
        eprintln!("error: {}: {e}", path.display());
        std::process::exit(1)
    };
    let file_len = || {
        std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_else(|e| fail(&e))
    };
    let file_bytes = file_len();
    let sizes = sizes::measure(&path).unwrap_or_else(|e| fail(&e));
    let per_device = |bytes: u64| {
        devices.map_or_else(
            || "-".to_string(),
            |n| format!("{:.1}", bytes as f64 / n.max(1) as f64),
        )
    };
    println!(
        "| table | entries | key bytes | value bytes | mean key / value | key+value per device | pages | fragmented bytes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut logical, mut pages, mut fragmented) = (0u64, 0u64, 0u64);
    for t in sizes.tables.iter().filter(|t| t.entries > 0) {
        let n = t.entries.max(1) as f64;
        println!(
            "| {:?} | {} | {} | {} | {:.1} / {:.1} | {} | {} | {} |",
            t.table,
            t.entries,
            t.key_bytes,
            t.value_bytes,
            t.key_bytes as f64 / n,
            t.value_bytes as f64 / n,
            per_device(t.key_bytes + t.value_bytes),
            t.pages,
            t.fragmented_bytes,
        );
        logical += t.key_bytes + t.value_bytes;
        pages += t.pages;
        fragmented += t.fragmented_bytes;
    }
    let page = sizes.page_size;
    println!(
        "| **all** | | | | | {} | {pages} ({} bytes) | {fragmented} |",
        per_device(logical),
        pages * page
    );
    println!();
    println!(
        "logical (keys + values) {logical} bytes; table pages {} bytes ({:.2}x logical); \
         allocated pages {} x {page} = {} bytes; file {file_bytes} bytes ({:.2}x logical){}",
        pages * page,
        (pages * page) as f64 / logical.max(1) as f64,
        sizes.allocated_pages,
        sizes.allocated_pages * page,
        file_bytes as f64 / logical.max(1) as f64,
        per_file(file_bytes, devices),
    );
    if compact {
        let started = std::time::Instant::now();
        sizes::compact(&path).unwrap_or_else(|e| fail(&e));
        let compacted = file_len();
        println!(
            "compacted in {:.1} s: file {file_bytes} -> {compacted} bytes{}",
            started.elapsed().as_secs_f64(),
            per_file(compacted, devices),
        );
    }
}

/// `; N file bytes per device`, when the devices are known.
fn per_file(file_bytes: u64, devices: Option<u64>) -> String {
    devices.map_or_else(String::new, |n| {
        format!(
            "; {:.0} file bytes per device",
            file_bytes as f64 / n.max(1) as f64
        )
    })
}
