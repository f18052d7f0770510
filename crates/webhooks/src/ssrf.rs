//! Where a webhook may never be delivered (SSRF): the address classes, URL
//! parsing, and the operator's allowlist.
//!
//! [`classify`] names the class of a forbidden address: loopback, private
//! (RFC 1918, `fc00::/7`), link-local, shared CGNAT space, multicast,
//! broadcast, unspecified, `0.0.0.0/8`, documentation, benchmarking and
//! reserved ranges, cloud metadata endpoints, and IPv6 forms that embed or
//! tunnel to IPv4 (mapped, compatible, NAT64, 6to4, Teredo). Mapped, NAT64
//! and 6to4 addresses are judged by the IPv4 address inside them; anything
//! outside global unicast `2000::/3` is refused.
//!
//! [`Destination::parse`] accepts only `http`/`https` URLs with a host and
//! without credentials; the `url` crate (WHATWG parsing) normalises every
//! IPv4 spelling (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) to the dotted
//! form, so an IP literal is judged as what it is. Names are judged by the
//! addresses they resolve to, when the client connects (see `deliver`).
//!
//! [`AllowList`] (`KONTEXTUAL_WEBHOOKS_ALLOW`, comma-separated CIDRs) lets an
//! operator deliver to a LAN or loopback receiver on purpose. A cloud
//! metadata address is only allowed when listed as a single address, never
//! through a wider range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use crate::Error;

/// The environment variable holding the allowlist: comma-separated CIDRs or
/// addresses, e.g. `127.0.0.1/32,192.168.10.0/24`.
pub const ALLOW_ENV: &str = "KONTEXTUAL_WEBHOOKS_ALLOW";

/// Why an address is never delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forbidden {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8` ("this network").
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `fc00::/7` (IPv6 unique local).
    UniqueLocal,
    /// `100.64.0.0/10` (carrier-grade NAT).
    SharedAddressSpace,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `fec0::/10` (deprecated site-local).
    SiteLocal,
    /// `169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`: cloud
    /// instance metadata (credentials live there).
    CloudMetadata,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`, `2001:2::/48`.
    Benchmarking,
    /// `240/4`, `192.0.0/24`, `192.88.99/24`, `100::/64`, `2001::/23` and IPv6
    /// outside `2000::/3`.
    Reserved,
    /// `::a.b.c.d` (deprecated IPv4-compatible IPv6).
    Ipv4Compatible,
    /// `::ffff:a.b.c.d` embedding a forbidden IPv4 address.
    Ipv4Mapped,
    /// `64:ff9b::/96` embedding a forbidden IPv4 address, or local-use
    /// NAT64 `64:ff9b:1::/48`.
    Nat64,
    /// `2002::/16` embedding a forbidden IPv4 address.
    SixToFour,
    /// `2001::/32` (Teredo tunnels).
    Teredo,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::Unspecified => "an unspecified address",
            Forbidden::ThisNetwork => "in 0.0.0.0/8 (this network)",
            Forbidden::Loopback => "a loopback address",
            Forbidden::Private => "a private address (RFC 1918)",
            Forbidden::UniqueLocal => "a unique local IPv6 address (fc00::/7)",
            Forbidden::SharedAddressSpace => "in shared address space (100.64.0.0/10)",
            Forbidden::LinkLocal => "a link-local address",
            Forbidden::SiteLocal => "a site-local IPv6 address",
            Forbidden::CloudMetadata => "a cloud metadata endpoint",
            Forbidden::Multicast => "a multicast address",
            Forbidden::Broadcast => "the broadcast address",
            Forbidden::Documentation => "a documentation address",
            Forbidden::Benchmarking => "a benchmarking address",
            Forbidden::Reserved => "a reserved address",
            Forbidden::Ipv4Compatible => "an IPv4-compatible IPv6 address",
            Forbidden::Ipv4Mapped => "an IPv4-mapped IPv6 address of a forbidden IPv4 address",
            Forbidden::Nat64 => "a NAT64 address of a forbidden IPv4 address",
            Forbidden::SixToFour => "a 6to4 address of a forbidden IPv4 address",
            Forbidden::Teredo => "a Teredo address",
        })
    }
}

const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn in4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn in6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// The class of a forbidden IPv4 address, `None` for a public one.
fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    use Forbidden::*;
    if METADATA_V4.contains(&ip) {
        return Some(CloudMetadata);
    }
    let table: &[([u8; 4], u32, Forbidden)] = &[
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, ThisNetwork),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, len, _)| in4(ip, *net, *len))
        .map(|(_, _, class)| *class)
}

/// The IPv4 address in bits `from..from+32` of an IPv6 address.
fn embedded_v4(ip: Ipv6Addr, from: u32) -> Ipv4Addr {
    let bits = u128::from(ip) >> (96 - from);
    Ipv4Addr::from((bits & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    use Forbidden::*;
    if ip == METADATA_V6 {
        return Some(CloudMetadata);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // ::ffff:a.b.c.d — judged as the IPv4 address it reaches.
    if in6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return classify_v4(embedded_v4(ip, 96)).map(|_| Ipv4Mapped);
    }
    // ::a.b.c.d — deprecated, never a legitimate destination.
    if in6(ip, [0; 8], 96) {
        return Some(Ipv4Compatible);
    }
    // NAT64 well-known prefix: the gateway reaches the embedded IPv4 address.
    if in6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(embedded_v4(ip, 96)).map(|_| Nat64);
    }
    if in6(ip, [0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48) {
        return Some(Nat64);
    }
    // 6to4: the IPv4 address follows the 16-bit prefix.
    if in6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return classify_v4(embedded_v4(ip, 16)).map(|_| SixToFour);
    }
    let table: &[([u16; 8], u32, Forbidden)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Teredo),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Benchmarking),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Reserved),
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, SiteLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    if let Some((_, _, class)) = table.iter().find(|(net, len, _)| in6(ip, *net, *len)) {
        return Some(*class);
    }
    // Only global unicast is ever a webhook receiver.
    if !in6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some(Reserved);
    }
    None
}

/// The class of a forbidden address, `None` for a publicly routable one.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// A webhook URL that passed the syntactic checks: `http` or `https`, a
/// host, no `user:password@`. Its `Debug` shows only scheme, host and port
/// (paths and queries often carry tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    url: Url,
}

impl Destination {
    /// Parses and checks a webhook URL (WHATWG parsing by the `url` crate).
    pub fn parse(text: &str) -> Result<Destination, Error> {
        let url = Url::parse(text.trim()).map_err(|e| Error::Url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Credentials);
        }
        match url.host() {
            None => return Err(Error::MissingHost),
            Some(Host::Domain("")) => return Err(Error::MissingHost),
            Some(_) => {}
        }
        Ok(Destination { url })
    }

    /// The normalised URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The normalised URL as text.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host as written after normalisation (IPv6 without brackets).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(Host::Ipv6(v6)) => v6.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        }
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.url.scheme() == "https" {
                443
            } else {
                80
            })
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.url.host()? {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(_) => None,
        }
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Destination({}://{}:{})",
            self.url.scheme(),
            self.host(),
            self.port()
        )
    }
}

/// Networks the operator allows on purpose (a LAN or loopback receiver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Parses CIDRs (`192.168.1.0/24`, `::1/128`) or bare addresses (a
    /// single host); blank entries are skipped.
    pub fn from_values(values: &[String]) -> Result<AllowList, Error> {
        let mut nets = Vec::new();
        for value in values {
            let entry = value.trim();
            if entry.is_empty() {
                continue;
            }
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(net_err) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(Error::AllowEntry {
                            entry: entry.to_owned(),
                            reason: net_err.to_string(),
                        });
                    }
                },
            };
            nets.push(net);
        }
        Ok(AllowList { nets })
    }

    /// Parses a comma-separated list.
    pub fn parse(text: &str) -> Result<AllowList, Error> {
        let values: Vec<String> = text.split(',').map(str::to_owned).collect();
        AllowList::from_values(&values)
    }

    /// The allowlist from [`ALLOW_ENV`]; empty when unset.
    pub fn parse_env() -> Result<AllowList, Error> {
        match std::env::var(ALLOW_ENV) {
            Ok(text) => AllowList::parse(&text),
            Err(_) => Ok(AllowList::default()),
        }
    }

    /// The networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is allowed despite its class. A cloud metadata address
    /// only when listed as that single address.
    fn allows(&self, ip: IpAddr, class: Forbidden) -> bool {
        let candidates = [Some(ip), ipv4_inside(ip).map(IpAddr::V4)];
        candidates.into_iter().flatten().any(|ip| {
            self.nets.iter().any(|net| {
                net.contains(&ip)
                    && (class != Forbidden::CloudMetadata
                        || (net.prefix_len() == net.max_prefix_len() && net.addr() == ip))
            })
        })
    }
}

/// The IPv4 address an IPv4-mapped IPv6 address stands for.
fn ipv4_inside(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    }
}

/// The delivery policy: the forbidden classes, minus the allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Networks allowed on purpose.
    pub allow: AllowList,
}

impl AddressPolicy {
    /// A policy with this allowlist.
    pub fn new(allow: AllowList) -> AddressPolicy {
        AddressPolicy { allow }
    }

    /// `Ok` if a delivery may connect to `ip`, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        match classify(ip) {
            None => Ok(()),
            Some(class) if self.allow.allows(ip, class) => Ok(()),
            Some(class) => Err(class),
        }
    }

    /// Checks a destination before any network use: an IP-literal host is
    /// checked now, and so is `localhost` (and `*.localhost`, which RFC 6761
    /// reserves for loopback: refused unless 127.0.0.1 or ::1 is allowed);
    /// any other name is checked at connect time on every address it
    /// resolves to (`deliver::Client`).
    pub fn check_destination(&self, dest: &Destination) -> Result<(), (IpAddr, Forbidden)> {
        if let Some(ip) = dest.ip() {
            return self.check(ip).map_err(|class| (ip, class));
        }
        let host = dest.host().trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            let v4 = IpAddr::from([127, 0, 0, 1]);
            let v6 = IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
            if let (Err(class), Err(_)) = (self.check(v4), self.check(v6)) {
                return Err((v4, class));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn o5_public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.3.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(classify(ip(s)), None, "{s}");
        }
    }

    #[test]
    fn o5_every_class_is_named() {
        use Forbidden::*;
        for (s, class) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", ThisNetwork),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("fd00:ec2::254", CloudMetadata),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", SiteLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("100::1", Reserved),
            ("::ffff:127.0.0.1", Ipv4Mapped),
            ("::ffff:169.254.169.254", Ipv4Mapped),
            ("::127.0.0.1", Ipv4Compatible),
            ("::8.8.8.8", Ipv4Compatible),
            ("64:ff9b::7f00:1", Nat64),
            ("64:ff9b::a9fe:a9fe", Nat64),
            ("64:ff9b:1::1", Nat64),
            ("2002:7f00:1::", SixToFour),
            ("2002:c0a8:101::1", SixToFour),
            ("2001::1", Teredo),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Teredo),
            ("4000::1", Reserved),
        ] {
            assert_eq!(classify(ip(s)), Some(class), "{s}");
        }
    }

    #[test]
    fn o5_allowlist_opens_only_what_it_names() {
        let policy = AddressPolicy::new(
            AllowList::from_values(&["127.0.0.1/32".into(), " 192.168.10.0/24 ".into()]).unwrap(),
        );
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("127.0.0.2")), Err(Forbidden::Loopback));
        assert_eq!(policy.check(ip("192.168.10.77")), Ok(()));
        assert_eq!(policy.check(ip("192.168.11.1")), Err(Forbidden::Private));
        assert_eq!(policy.check(ip("8.8.8.8")), Ok(()));
        // metadata is never opened by a range, only by naming it
        let wide = AddressPolicy::new(AllowList::parse("169.254.0.0/16").unwrap());
        assert_eq!(wide.check(ip("169.254.1.1")), Ok(()));
        assert_eq!(
            wide.check(ip("169.254.169.254")),
            Err(Forbidden::CloudMetadata)
        );
        let named = AddressPolicy::new(AllowList::parse("169.254.169.254").unwrap());
        assert_eq!(named.check(ip("169.254.169.254")), Ok(()));
    }

    #[test]
    fn o5_allowlist_errors_name_the_entry() {
        let err = AllowList::parse("10.0.0.0/8, not-a-net").unwrap_err();
        assert!(err.to_string().contains("not-a-net"), "{err}");
        assert!(AllowList::parse("10.0.0.0/33").is_err());
        assert_eq!(AllowList::parse("").unwrap(), AllowList::default());
        assert_eq!(AllowList::parse(" , ").unwrap().nets().len(), 0);
        assert_eq!(AllowList::parse("::1, 10.0.0.1").unwrap().nets().len(), 2);
    }

    /// O5: `localhost` is loopback by definition (RFC 6761): refused when
    /// the webhook is created unless a loopback network is allowed.
    #[test]
    fn o5_localhost_names_are_loopback() {
        let none = AddressPolicy::new(AllowList::default());
        for url in [
            "http://localhost:9/x",
            "http://LOCALHOST./x",
            "https://api.localhost/x",
        ] {
            let dest = Destination::parse(url).unwrap();
            let (ip, class) = none.check_destination(&dest).unwrap_err();
            assert_eq!(ip, IpAddr::from([127, 0, 0, 1]), "{url}");
            assert_eq!(class, Forbidden::Loopback, "{url}");
        }
        let open = AddressPolicy::new(AllowList::parse("127.0.0.1/32").unwrap());
        assert!(
            open.check_destination(&Destination::parse("http://localhost:9/x").unwrap())
                .is_ok()
        );
        // other names wait for their addresses
        assert!(
            none.check_destination(&Destination::parse("https://hooks.example.com/x").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn o5_destination_syntax() {
        assert_eq!(
            Destination::parse("ftp://example.com/"),
            Err(Error::Scheme("ftp".into()))
        );
        assert_eq!(
            Destination::parse("file:///etc/passwd"),
            Err(Error::Scheme("file".into()))
        );
        assert_eq!(
            Destination::parse("https://user:pw@example.com/"),
            Err(Error::Credentials)
        );
        assert_eq!(
            Destination::parse("https://user@example.com/"),
            Err(Error::Credentials)
        );
        assert!(matches!(
            Destination::parse("example.com"),
            Err(Error::Url(_))
        ));
        assert!(matches!(Destination::parse("http://"), Err(Error::Url(_))));
        let d = Destination::parse("https://hooks.example.com/x?token=secret").unwrap();
        assert_eq!(d.port(), 443);
        assert_eq!(d.ip(), None);
        assert!(!format!("{d:?}").contains("secret"));
        let d = Destination::parse("http://0x7f.1:8080/").unwrap();
        assert_eq!(d.ip(), Some(ip("127.0.0.1")));
        assert_eq!(d.port(), 8080);
        let d = Destination::parse("http://[::ffff:7f00:1]/").unwrap();
        assert_eq!(d.host(), "::ffff:127.0.0.1");
    }
}
