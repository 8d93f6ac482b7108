package toa_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/toa"
)

var (
	client4 = netip.AddrPortFrom(addr4, 51234)
	client6 = netip.AddrPortFrom(addr6, 5000)
)

func TestAppendDialect(t *testing.T) {
	for _, tc := range []struct {
		d      toa.Dialect
		client netip.AddrPort
		want   []byte
	}{
		{toa.Kind200V4, client4, opt200V4},
		{toa.Kind201V6, client6, opt201V6},
		{toa.Kind253V6, client6, opt253V6},
		{toa.Kind253V4, client4, opt253V4},
		{toa.Kind254V4, client4, opt254V4},
		{toa.Kind254TTG, client4, cat([]byte{254, 16}, port4, wire4, make([]byte, 8))},
		{toa.Kind254V6, client6, opt254V6},
		{toa.Kind28V4, client4, opt28V4},
		{toa.Kind28V6, client6, opt28V6},
		{toa.Kind254V6, netip.AddrPortFrom(netip.AddrFrom16([16]byte(mapped)), 51234), cat([]byte{254, 20}, port4, mapped)},
	} {
		prefix := []byte{1, 1}
		got, err := toa.AppendDialect(prefix, tc.d, tc.client)
		if err != nil {
			t.Errorf("AppendDialect(%v, %v): %v", tc.d, tc.client, err)
			continue
		}
		if diff := cmp.Diff(cat(prefix, tc.want), got); diff != "" {
			t.Errorf("AppendDialect(%v, %v) mismatch (-want +got):\n%s", tc.d, tc.client, diff)
		}
	}
}

func TestAppendErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      toa.Dialect
		client netip.AddrPort
		want   string
	}{
		{"v6 client in a v4 dialect", toa.Kind200V4, client6, "encode TOA 200/8: client [2001:db8:1::7]:5000 does not fit layout port+ipv4"},
		{"v4 client in a v6 dialect", toa.Kind254V6, client4, "encode TOA 254/20: client 203.0.113.7:51234 does not fit layout port+ipv6"},
		{"mapped client in a v4 dialect", toa.Kind28V4, netip.AddrPortFrom(netip.AddrFrom16([16]byte(mapped)), 1), "encode TOA 28/7: client [::ffff:203.0.113.7]:1 does not fit layout version+ipv4"},
		{"no address", toa.Kind254V4, netip.AddrPort{}, "encode TOA 254/8: client invalid AddrPort does not fit layout port+ipv4"},
		{"not built in", toa.Dialect{Kind: 240, Len: 8}, client4, "encode TOA: 240/8 is not a built-in dialect"},
	} {
		got, err := toa.AppendDialect([]byte{1}, tc.d, tc.client)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: AppendDialect error = %v, want %q", tc.name, err, tc.want)
		}
		if len(got) != 1 {
			t.Errorf("%s: AppendDialect on error returned % x, want dst unchanged", tc.name, got)
		}
	}
	if _, err := toa.Append(nil, 240, toa.LayoutNone, client4); err == nil {
		t.Errorf("Append with LayoutNone succeeded")
	}
}

// TestRoundTrip encodes every layout under several kinds and parses it back.
func TestRoundTrip(t *testing.T) {
	s := mustSet(t, "all,240=port+ipv4,241=port+ipv6,242=version+ipv4,243=version+ipv6,244=port+ipv4+dest")
	clients := map[bool][]netip.AddrPort{
		false: {client4, netip.MustParseAddrPort("0.0.0.0:0"), netip.MustParseAddrPort("255.255.255.255:65535"), netip.MustParseAddrPort("198.51.100.1:63881")},
		true:  {client6, netip.MustParseAddrPort("[::]:0"), netip.MustParseAddrPort("[::ffff:192.0.2.1]:80"), netip.MustParseAddrPort("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
	}
	for _, d := range s.Dialects() {
		l := s.Layout(d)
		for _, c := range clients[l.IPv6()] {
			opt, err := toa.Append(nil, d.Kind, l, c)
			if err != nil {
				t.Errorf("Append(%v, %v, %v): %v", d, l, c, err)
				continue
			}
			if len(opt) != int(d.Len) {
				t.Errorf("Append(%v, %v, %v) is %d bytes, want %d", d, l, c, len(opt), d.Len)
			}
			want := toa.Client{Dialect: d, Addr: c.Addr(), HasPort: l.HasPort()}
			if l.HasPort() {
				want.Port = c.Port()
			}
			// Not in a SYN: a port of 63881 must survive kind 254.
			got, err := s.Parse(opt, 0)
			if err != nil || got != (toa.Found{First: want, Count: 1}) {
				t.Errorf("Parse(Append(%v, %v)) = %+v, %v; want %+v", d, c, got, err, want)
			}
		}
	}
}
