//! What the store holds, per table: entries, the bytes of their keys and values, and what redb
//! spends on top of them (pages, branch keys, fragmentation). It reads a database file that
//! nothing else has open (a stopped server's), for the scale benchmark's record-size table
//! (docs/benchmarks.md, issue 17). Only [`compact`] writes, and only when asked.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::StoreError;
use crate::engine::Table;

/// The sizes of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSize {
    /// The table.
    pub table: Table,
    /// Its entries.
    pub entries: u64,
    /// Sum of the key lengths.
    pub key_bytes: u64,
    /// Sum of the value lengths.
    pub value_bytes: u64,
    /// Leaf and branch pages of its B-tree.
    pub pages: u64,
    /// redb's keys of branch pages and other metadata.
    pub metadata_bytes: u64,
    /// Unused bytes inside its pages.
    pub fragmented_bytes: u64,
}

/// The sizes inside a database file (its length on disk is the caller's `metadata().len()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSizes {
    /// redb's page size.
    pub page_size: u64,
    /// Pages allocated to any tree (tables, redb's own).
    pub allocated_pages: u64,
    /// Every table of [`Table::ALL`] that the file holds.
    pub tables: Vec<TableSize>,
}

/// Compacts the database file at `path`, which nothing else may have open (a stopped
/// server's): redb moves pages down into the free space inside the file and trims its end.
/// redb grows a file smaller than 4 GiB by doubling it and spreads new pages over the grown
/// part, so the file of a stopped store can hold free space that closing does not give back
/// (a fifth of a 1,000,000-device store's, docs/benchmarks.md "Issue 17"). It took 26 s on
/// that store, so no server path runs it. Returns whether anything moved.
pub fn compact(path: &Path) -> Result<bool, StoreError> {
    let mut db = redb::Database::open(path)?;
    Ok(db.compact()?)
}

/// Measures the database file at `path`, which nothing else may have open.
pub fn measure(path: &Path) -> Result<FileSizes, StoreError> {
    let db = redb::Database::open(path)?;
    let txn = db.begin_read()?;
    let mut tables = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        let t = match txn.open_table(table.definition()) {
            // A file written before this table existed (a store creates it when it opens).
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            t => t?,
        };
        let (mut key_bytes, mut value_bytes) = (0u64, 0u64);
        for item in t.iter()? {
            let (k, v) = item?;
            key_bytes += k.value().len() as u64;
            value_bytes += v.value().len() as u64;
        }
        let stats = t.stats()?;
        tables.push(TableSize {
            table,
            entries: t.len()?,
            key_bytes,
            value_bytes,
            pages: stats.leaf_pages() + stats.branch_pages(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
        });
    }
    drop(txn);
    let stats = db.begin_write()?.stats()?;
    Ok(FileSizes {
        page_size: stats.page_size() as u64,
        allocated_pages: stats.allocated_pages(),
        tables,
    })
}
