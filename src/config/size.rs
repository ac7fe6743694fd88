//! `min_memory`: a byte size written for people.

use std::fmt;

/// A number of bytes, written as `2GiB`, `1536MiB`, `2GB` or a bare byte count.
///
/// Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal units (KB, MB, GB, TB) powers of
/// 1000. A bare `G` or `M` is refused: for memory the difference is 7%, and guessing it wrong
/// turns a guard into a coin toss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

impl ByteSize {
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let expected = "expected a size like 2GiB, 1536MiB or 2GB (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)";
        let value = value.trim();
        let split = value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(split);
        let number: u64 = number.parse().map_err(|_| expected.to_string())?;
        let unit = unit.trim();
        let factor = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|(_, factor)| *factor)
                .ok_or_else(|| expected.to_string())?
        };
        let bytes = number
            .checked_mul(factor)
            .ok_or_else(|| format!("{expected}; this one does not fit in 64 bits"))?;
        if bytes == 0 {
            return Err(format!("{expected}, greater than zero"));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, so `1536MiB` prints as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, factor) = UNITS[..5]
            .iter()
            .rev()
            .find(|(_, factor)| self.0 % factor == 0)
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{name}", self.0 / factor)
    }
}

super::values::deserialize_checked!(ByteSize);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<u64, String> {
        ByteSize::try_from(s.to_string()).map(ByteSize::bytes)
    }

    #[test]
    fn reads_binary_decimal_and_bare_sizes() {
        assert_eq!(parse("2GiB"), Ok(2 << 30));
        assert_eq!(parse("1536MiB"), Ok(1536 << 20));
        assert_eq!(parse("1536 mib"), Ok(1536 << 20));
        assert_eq!(parse("2GB"), Ok(2_000_000_000));
        assert_eq!(parse("2147483648"), Ok(2 << 30));
    }

    #[test]
    fn refuses_ambiguous_zero_and_overflowing_sizes() {
        for bad in [
            "2G",
            "1.5GiB",
            "",
            "GiB",
            "0",
            "-1GiB",
            "99999999999TiB",
            "2 GiBs",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prints_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(1536 << 20).to_string(), "1536MiB");
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
