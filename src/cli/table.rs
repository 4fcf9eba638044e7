//! Tables on stdout, through comfy-table: markdown (so a table pastes into the benchmarks'
//! READMEs), text columns left-aligned and numbers right-aligned.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};

/// An empty table under `header`, whose columns from index `first_number` on are right-aligned.
pub fn table(header: &[&str], first_number: usize) -> Table {
    let mut table = Table::new();
    table
        .load_preset(ASCII_MARKDOWN)
        .set_header(header.to_vec());
    for column in table.column_iter_mut().skip(first_number) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table
}
