//! Plain-text tables with aligned columns, for the `table` output format.
//!
//! Cells come from the database and may hold anything a Telegram title can
//! hold, so control characters (newlines, terminal escapes) are replaced
//! before printing: a title must not be able to break the layout or drive
//! the operator's terminal. Width is counted in characters, which is exact
//! for the ASCII ids and usernames and close enough for titles.

/// Rows under a header, printed with columns padded to the widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    /// The table, each line indented by `indent` spaces and ending in a newline.
    pub(crate) fn render(&self, indent: usize) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = " ".repeat(indent);
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the values aligned.
pub(crate) fn key_values(pairs: &[(&str, String)], indent: usize) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let line = format!(
            "{}{key}{}  {}",
            " ".repeat(indent),
            " ".repeat(width - key.chars().count()),
            clean(value)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A cell made safe to print: control characters become `?`; empty becomes `-`.
pub(crate) fn clean(cell: &str) -> String {
    if cell.is_empty() {
        return "-".to_owned();
    }
    cell.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_neutralises_control_characters() {
        let mut t = Table::new(&["ID", "TITLE"]);
        t.row(vec!["-100123".into(), "a\nb\u{1b}[31m".into()]);
        t.row(vec!["-1".into(), String::new()]);
        assert_eq!(
            t.render(0),
            "ID       TITLE\n-100123  a?b?[31m\n-1       -\n"
        );
    }

    #[test]
    fn aligns_keys() {
        assert_eq!(
            key_values(&[("a", "1".into()), ("long key", "2".into())], 2),
            "  a         1\n  long key  2\n"
        );
    }
}
