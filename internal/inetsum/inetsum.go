// Package inetsum computes the Internet checksum (RFC 1071) used by IPv4
// headers and TCP, and updates it incrementally (RFC 1624). Its functions
// are pure and safe for concurrent use.
package inetsum

// Sum adds the 16-bit big-endian words of b to the running sum s, padding an
// odd final byte with zero, and returns the new unfolded sum.
func Sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// Fold folds a running sum into 16 bits with end-around carry. The checksum
// field holds its complement: ^Fold(Sum(...)).
func Fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// Update returns checksum old updated for data whose running sum went from
// before to after: RFC 1624, eqn. 3.
func Update(old uint16, before, after uint32) uint16 {
	return ^Fold(uint32(^old) + uint32(^Fold(before)) + uint32(Fold(after)))
}
