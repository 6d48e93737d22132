//! CEL rule fragments shared by several kinds.
//!
//! The Kubernetes CEL environment (1.31+) has the `ip()`/`cidr()` library, so
//! address syntax and containment are checked at admission. Every rule guards
//! its own syntax check, so a malformed value yields the syntax message rather
//! than a CEL evaluation error.

/// A single IPv4 or IPv6 address.
pub const IS_IP: &str = "isIP(self)";
/// A single IPv4 address.
pub const IS_IPV4: &str = "isIP(self) && ip(self).family() == 4";
/// A CIDR whose host bits are zero (`10.0.1.0/24`, not `10.0.1.5/24`).
pub const IS_NETWORK_CIDR: &str = "isCIDR(self) && cidr(self) == cidr(self).masked()";
/// Not an IPv6 address (other values are left to the syntax rule).
pub const NOT_IPV6_IP: &str = "!isIP(self) || ip(self).family() == 4";
/// Not an IPv6 address or CIDR (other values are left to the syntax rule).
pub const NOT_IPV6_IP_OR_CIDR: &str = "isIP(self) ? ip(self).family() == 4 : \
     (!isCIDR(self) || cidr(self).ip().family() == 4)";
/// A subnet's prefix length leaves room for a gateway and hosts: `/8`..`/30`
/// for IPv4, `/8`..`/126` for IPv6 (no `0.0.0.0/0`).
pub const SUBNET_PREFIX_LENGTH: &str = "!isCIDR(self) || (cidr(self).prefixLength() >= 8 && \
     cidr(self).prefixLength() <= (cidr(self).ip().family() == 4 ? 30 : 126))";
/// An OVN match expression built from field names, addresses, numbers,
/// comparison and boolean operators and parentheses only: no quoted strings,
/// no `;`, no `{}` sets, no `$`/`@` references to other rows.
pub const IS_SAFE_OVN_MATCH: &str = "self.matches('^[A-Za-z0-9_.:/ =!<>&|()-]+$')";
/// The IPv4 address `expr` (a string known to be one) as an integer.
pub fn ipv4_as_int(expr: &str) -> String {
    let octet = |i: usize| format!("int({expr}.split('.')[{i}])");
    format!(
        "({} * 16777216 + {} * 65536 + {} * 256 + {})",
        octet(0),
        octet(1),
        octet(2),
        octet(3)
    )
}

/// The number of IPv4 addresses in a block of prefix length `prefix` (an int
/// expression in 0..=32): CEL has no exponentiation, so a table lookup.
pub fn ipv4_block_size(prefix: &str) -> String {
    let sizes: Vec<String> = (0..=32u32)
        .map(|p| (1u64 << (32 - p)).to_string())
        .collect();
    format!("[{}][{prefix}]", sizes.join(", "))
}

/// Either an address or a CIDR.
pub const IS_IP_OR_CIDR: &str = "isIP(self) || isCIDR(self)";
/// A port `1`..`65535` or an ascending range `lo-hi`, as a string.
pub const IS_PORT_OR_RANGE: &str = "self.matches('^[0-9]{1,5}(-[0-9]{1,5})?$') && \
     self.split('-').all(p, int(p) >= 1 && int(p) <= 65535) && \
     (self.split('-').size() == 1 || int(self.split('-')[0]) <= int(self.split('-')[1]))";
/// The field may not change once set.
pub const IMMUTABLE: &str = "self == oldSelf";
/// `key: value`, the node-selector notation of the seeds.
pub const IS_SELECTOR_ITEM: &str = "self.matches('^[A-Za-z0-9./_-]+: *[A-Za-z0-9._-]*$')";

/// Maximum length of a textual address or CIDR (an IPv6 CIDR is at most 43).
pub const ADDR_MAX: u32 = 64;

/// DNS-1123 subdomain, the shape of every object name we refer to.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_table_is_indexed_by_prefix_length() {
        let table = ipv4_block_size("p");
        let sizes: Vec<u64> = table
            .trim_start_matches('[')
            .trim_end_matches("][p]")
            .split(", ")
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(sizes.len(), 33);
        assert_eq!(
            (sizes[0], sizes[8], sizes[24], sizes[32]),
            (1 << 32, 1 << 24, 256, 1)
        );
    }

    #[test]
    fn ipv4_as_int_weights_the_octets() {
        assert_eq!(
            ipv4_as_int("g"),
            "(int(g.split('.')[0]) * 16777216 + int(g.split('.')[1]) * 65536 + \
             int(g.split('.')[2]) * 256 + int(g.split('.')[3]))"
        );
    }
}
