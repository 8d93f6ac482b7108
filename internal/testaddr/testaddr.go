// Package testaddr holds the documentation addresses of the test
// topology, declared once for the fullnat forwarder's unit tests, the
// namespace testbed and the end-to-end test: the VIPs clients dial, the
// addresses the proxy connects to the origin from, and the origin's
// servers.
package testaddr

import "net/netip"

var (
	VIP4       = netip.MustParseAddrPort("198.51.100.1:80")
	VIP6       = netip.MustParseAddrPort("[2001:db8:100::1]:80")
	ProxyAddr4 = netip.MustParseAddr("198.51.100.10")
	ProxyAddr6 = netip.MustParseAddr("2001:db8:100::10")
	Origin4    = netip.MustParseAddrPort("192.0.2.20:8080")
	Origin6    = netip.MustParseAddrPort("[2001:db8:2::20]:8080")
)

// Trusted are the proxy's origin-side ranges, as --trusted-proxies takes
// them: toad believes TOAs from them alone.
const Trusted = "198.51.100.0/24,2001:db8:100::/64"
