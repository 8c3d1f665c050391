//! Kubernetes resource quantities (`32Mi`, `1G`, `500m`, `0.5`), as users write
//! them in manifests and on the command line.

/// Parses a memory-style quantity into bytes: plain numbers, decimal suffixes
/// (k, M, G, T, P, E) and binary ones (Ki, Mi, Gi, Ti, Pi, Ei).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid quantity {s:?}: expected a number with an optional suffix like 64Mi or 1G")
    };
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000u64.pow(2),
        "G" => 1000u64.pow(3),
        "T" => 1000u64.pow(4),
        "P" => 1000u64.pow(5),
        "E" => 1000u64.pow(6),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * multiplier as f64;
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.ceil() as u64)
}

/// Parses a CPU quantity into millicores: `500m`, `0.5`, `2`.
pub fn parse_millicpu(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid cpu quantity {s:?}: expected e.g. 500m, 0.5 or 2");
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().map_err(|_| bad());
    }
    let cores: f64 = s.parse().map_err(|_| bad())?;
    if !cores.is_finite() || cores < 0.0 {
        return Err(bad());
    }
    Ok((cores * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        let check = |s: &str, want: Result<u64, ()>| {
            assert_eq!(parse_bytes(s).map_err(|_| ()), want, "{s}")
        };
        check("32Mi", Ok(32 << 20));
        check("1G", Ok(1_000_000_000));
        check("1.5Ki", Ok(1536));
        check("100", Ok(100));
        check("1k", Ok(1000));
        check("12MB", Err(()));
        check("-1", Err(()));
        check("", Err(()));
    }

    #[test]
    fn millicpu() {
        let check = |s: &str, want: Result<u64, ()>| {
            assert_eq!(parse_millicpu(s).map_err(|_| ()), want, "{s}")
        };
        check("500m", Ok(500));
        check("0.5", Ok(500));
        check("2", Ok(2000));
        check("0.0001", Ok(1));
        check("x", Err(()));
    }
}
