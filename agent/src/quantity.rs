//! Kubernetes resource quantities (`32Mi`, `1G`, `500m`, `129e6`, `0.5`), as
//! users write them in manifests and on the command line. The grammar is the
//! API server's: a signed decimal number, then a binary suffix (Ki … Ei), a
//! decimal suffix (n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2).

/// Parses a quantity into its value in base units (bytes, cores).
fn parse(s: &str) -> Result<f64, ()> {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(split);
    if num.is_empty()
        || num == "."
        || num.matches('.').count() > 1
        || num.rfind('-').is_some_and(|i| i > 0)
    {
        return Err(());
    }
    let value: f64 = num.parse().map_err(|_| ())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| ())?;
            10f64.powi(e)
        }
        _ => return Err(()),
    };
    let v = value * multiplier;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(())
    }
}

/// A memory-style quantity in bytes (rounded up, as the API server does).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    match parse(s) {
        Ok(v) if (0.0..=u64::MAX as f64).contains(&v) => Ok(v.ceil() as u64),
        _ => Err(format!(
            "invalid quantity {s:?}: expected a number with an optional suffix like 64Mi or 1G"
        )),
    }
}

/// A CPU quantity in millicores (rounded up: `0.5m` is 1m, as the kubelet's MilliValue).
pub fn parse_millicpu(s: &str) -> Result<u64, String> {
    match parse(s) {
        Ok(v) if v >= 0.0 && v * 1000.0 <= u64::MAX as f64 => {
            Ok((v * 1000.0 - 1e-9).ceil().max(0.0) as u64)
        }
        _ => Err(format!(
            "invalid cpu quantity {s:?}: expected e.g. 500m, 0.5 or 2"
        )),
    }
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
        check("129e6", Ok(129_000_000));
        check("129E6", Ok(129_000_000));
        check("1e3", Ok(1000));
        check("+5", Ok(5));
        check("12MB", Err(()));
        check("-1", Err(()));
        check("", Err(()));
        check("1.2.3", Err(()));
        check("1-2", Err(()));
    }

    #[test]
    fn millicpu() {
        let check = |s: &str, want: Result<u64, ()>| {
            assert_eq!(parse_millicpu(s).map_err(|_| ()), want, "{s}")
        };
        check("500m", Ok(500));
        check("0.5", Ok(500));
        check("2", Ok(2000));
        check("1k", Ok(1_000_000));
        check("0.5m", Ok(1));
        check("0.0001", Ok(1));
        check("100u", Ok(1));
        check("1e-3", Ok(1));
        check("x", Err(()));
    }
}
