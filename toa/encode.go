package toa

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Append appends a TOA option of the given kind and layout carrying client to
// dst. For layouts without a port, client's port is ignored; for
// LayoutPortIPv4Dest the destination fields are zero. The client's family
// must match the layout's.
func Append(dst []byte, kind uint8, l Layout, client netip.AddrPort) ([]byte, error) {
	addr := client.Addr()
	if l == LayoutNone || l.Len() == 0 {
		return dst, fmt.Errorf("encode TOA: no layout")
	}
	if addr.Is4() == l.IPv6() || !addr.IsValid() {
		return dst, fmt.Errorf("encode TOA %d/%d: client %v does not fit layout %v", kind, l.Len(), client, l)
	}
	dst = append(dst, kind, l.Len())
	switch l {
	case LayoutPortIPv4, LayoutPortIPv6:
		dst = binary.BigEndian.AppendUint16(dst, client.Port())
		dst = append(dst, addr.AsSlice()...)
	case LayoutPortIPv4Dest:
		dst = binary.BigEndian.AppendUint16(dst, client.Port())
		a4 := addr.As4()
		dst = append(dst, a4[:]...)
		dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	case LayoutVersionIPv4, LayoutVersionIPv6:
		dst = append(dst, 1)
		dst = append(dst, addr.AsSlice()...)
	}
	return dst, nil
}

// AppendDialect appends a TOA in a built-in dialect; see Append.
func AppendDialect(dst []byte, d Dialect, client netip.AddrPort) ([]byte, error) {
	l := BuiltinLayout(d)
	if l == LayoutNone {
		return dst, fmt.Errorf("encode TOA: %v is not a built-in dialect", d)
	}
	return Append(dst, d.Kind, l, client)
}
