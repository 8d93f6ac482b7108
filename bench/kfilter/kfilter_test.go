package kfilter

import (
	"net/netip"
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
)

func TestInbound(t *testing.T) {
	seg := func(src, dst string) []byte {
		s := craft.Segment{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Flags: decode.ACK}
		return s.IP()
	}
	for _, tc := range []struct {
		name string
		ip   []byte
		want bool
	}{
		{"to an IPv4 server", seg("198.51.100.1:1000", "192.0.2.20:8080"), true},
		{"to an IPv6 server", seg("[2001:db8:100::1]:1000", "[2001:db8::21]:8080"), true},
		{"from an IPv4 server", seg("192.0.2.21:443", "198.51.100.1:1000"), false},
		{"from an IPv6 server", seg("[2001:db8::20]:443", "[2001:db8:100::1]:1000"), false},
		{"not IP", []byte{0, 1, 2, 3}, true},
		{"empty", nil, true},
	} {
		if got := inbound(tc.ip); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
