//! kubectl-style tables: upper-case headers, columns padded to the widest cell,
//! three spaces between columns.

/// Renders rows under headers.
pub fn render(headers: &[&str], rows: &[Vec<String>], no_headers: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push('\n');
    };
    if !no_headers {
        line(&mut headers.iter().copied());
    }
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_columns() {
        let got = super::render(
            &["NAME", "STATUS"],
            &[vec!["a-long-name".into(), "Running".into()]],
            false,
        );
        assert_eq!(got, "NAME          STATUS\na-long-name   Running\n");
    }
}
