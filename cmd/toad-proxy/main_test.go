package main

import (
	"io"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toad-project/toad/internal/fullnat"
	"github.com/toad-project/toad/toa"
)

func TestParseFlags(t *testing.T) {
	base := []string{"-vip", "198.51.100.1:80,[2001:db8:100::1]:80", "-origin", "192.0.2.20:8080", "-proxy-addr", "198.51.100.10,2001:db8:100::10"}
	for _, tc := range []struct {
		name  string
		extra []string
		want  func(*fullnat.Config)
	}{
		{"defaults", nil, func(*fullnat.Config) {}},
		{"LVS 200/8", []string{"-toa", "200/8", "-placement", "syn+ack+data"}, func(c *fullnat.Config) {
			c.TOA4 = fullnat.Option{Dialect: toa.Kind200V4}
			c.Placement = fullnat.LVS
		}},
		{"jupiter", []string{"-placement", "ack", "-position", "after-options", "-toa6", "201/20"}, func(c *fullnat.Config) {
			c.Placement, c.Position = fullnat.ACK, fullnat.AfterOptions
			c.TOA6 = fullnat.Option{Dialect: toa.Kind201V6}
		}},
		{"custom kind, no IPv6 TOA", []string{"-toa", "240=port+ipv4", "-toa6", "none", "-ports", "2000-2999"}, func(c *fullnat.Config) {
			c.TOA4 = fullnat.Option{Dialect: toa.Dialect{Kind: 240, Len: 8}, Layout: toa.LayoutPortIPv4}
			c.TOA6 = fullnat.Option{}
			c.PortMin, c.PortMax = 2000, 2999
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := parseFlags(append(append([]string(nil), base...), tc.extra...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := fullnat.Config{
				VIPs:         []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:80"), netip.MustParseAddrPort("[2001:db8:100::1]:80")},
				Origin:       netip.MustParseAddrPort("192.0.2.20:8080"),
				ProxyAddr4:   netip.MustParseAddr("198.51.100.10"),
				ProxyAddr6:   netip.MustParseAddr("2001:db8:100::10"),
				TOA4:         fullnat.Option{Dialect: toa.Kind254V4},
				TOA6:         fullnat.Option{Dialect: toa.Kind254V6},
				Placement:    fullnat.DPVS,
				PortMin:      1024,
				PortMax:      65535,
				MTU:          fullnat.DefaultMTU,
				IdleTimeout:  fullnat.DefaultIdleTimeout,
				CloseTimeout: fullnat.DefaultCloseTimeout,
				Device:       fullnat.DefaultDevice,
			}
			tc.want(&want)
			if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.AddrPort{}, netip.Addr{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-vip", "198.51.100.1", "-origin", "192.0.2.20:8080", "-proxy-addr", "198.51.100.10"},
		{"-vip", "198.51.100.1:80", "-origin", "192.0.2.20", "-proxy-addr", "198.51.100.10"},
		{"-vip", "198.51.100.1:80", "-origin", "192.0.2.20:80", "-proxy-addr", "nope"},
		{"-vip", "198.51.100.1:80", "-origin", "192.0.2.20:80", "-toa", "240/8"},
		{"-vip", "198.51.100.1:80", "-origin", "192.0.2.20:80", "-placement", "fin"},
		{"-vip", "198.51.100.1:80", "-origin", "192.0.2.20:80", "-ports", "9-1"},
		{"extra"},
	} {
		if _, _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): got no error", args)
		}
	}
}
