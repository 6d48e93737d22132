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
