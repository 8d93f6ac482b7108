package decode_test

import (
	"testing"

	"github.com/toad-project/toad/decode"
)

func TestFlagsString(t *testing.T) {
	for _, tc := range []struct {
		f    decode.Flags
		want string
	}{
		{0, "none"},
		{decode.SYN, "S"},
		{decode.SYN | decode.ACK, "S."},
		{decode.ACK, "."},
		{decode.PSH | decode.ACK, "P."},
		{decode.FIN | decode.ACK, "F."},
		{decode.FIN | decode.PSH | decode.ACK, "FP."},
		{decode.RST, "R"},
		{decode.SYN | decode.ECE | decode.CWR, "SEW"},
		{0xff, "FSRP.UEW"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(%#02x).String() = %q, want %q", uint8(tc.f), got, tc.want)
		}
	}
	if !(decode.SYN | decode.ACK).Has(decode.SYN) || decode.SYN.Has(decode.SYN|decode.ACK) {
		t.Errorf("Flags.Has is wrong")
	}
}

func TestReasonString(t *testing.T) {
	want := []string{"ok", "unsupported_link", "truncated", "not_ip", "bad_ip_header", "fragment", "not_tcp", "bad_tcp_header", "bad_options"}
	if decode.NumReasons != len(want) {
		t.Fatalf("NumReasons = %d, want %d", decode.NumReasons, len(want))
	}
	for i, w := range want {
		if got := decode.Reason(i).String(); got != w {
			t.Errorf("Reason(%d).String() = %q, want %q", i, got, w)
		}
	}
	if got := decode.Reason(200).String(); got != "reason(200)" {
		t.Errorf("Reason(200).String() = %q", got)
	}
}

func TestLinkType(t *testing.T) {
	for _, tc := range []struct {
		l    decode.LinkType
		want string
	}{
		{decode.LinkEthernet, "ethernet"}, {decode.LinkRaw, "raw"}, {decode.LinkLinuxSLL, "linux_sll"},
		{decode.LinkIPv4, "ipv4"}, {decode.LinkIPv6, "ipv6"}, {decode.LinkLinuxSLL2, "linux_sll2"},
	} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("LinkType(%d).String() = %q, want %q", uint16(tc.l), got, tc.want)
		}
		if err := decode.CheckLink(tc.l); err != nil {
			t.Errorf("CheckLink(%v) = %v", tc.l, err)
		}
	}
	if got := decode.LinkType(105).String(); got != "linktype(105)" {
		t.Errorf("LinkType(105).String() = %q", got)
	}
	want := "link type 105 is not supported (supported: Ethernet 1, raw IP 101/228/229, Linux cooked SLL 113 and SLL2 276)"
	if err := decode.CheckLink(105); err == nil || err.Error() != want {
		t.Errorf("CheckLink(105) = %v, want %q", err, want)
	}
}

func TestHasTOA(t *testing.T) {
	r := decode.Record{}
	if r.HasTOA() {
		t.Errorf("zero Record: HasTOA() = true")
	}
	r.TOACount = 1
	if !r.HasTOA() {
		t.Errorf("Record with TOACount 1: HasTOA() = false")
	}
}
