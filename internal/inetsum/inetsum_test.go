package inetsum

import "testing"

// The worked example of RFC 1071 section 3: the words 0001 f203 f4f5 f6f7
// sum to ddf2 after folding.
func TestRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Fold(Sum(b, 0)); got != 0xddf2 {
		t.Errorf("Fold(Sum(example)) = %#04x, want 0xddf2", got)
	}
	if got := Fold(Sum([]byte{0x01}, 0)); got != 0x0100 {
		t.Errorf("odd byte: got %#04x, want 0x0100", got)
	}
}

// Update must agree with recomputing the checksum from scratch.
func TestUpdateMatchesRecompute(t *testing.T) {
	data := []byte{0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a}
	old := ^Fold(Sum(data, 0))
	for i := 0; i+1 < len(data); i += 2 {
		for _, v := range []uint16{0x0000, 0xffff, 0x1234, uint16(data[i])<<8 ^ 0xa5} {
			changed := append([]byte(nil), data...)
			changed[i], changed[i+1] = byte(v>>8), byte(v)
			want := ^Fold(Sum(changed, 0))
			got := Update(old, Sum(data[i:i+2], 0), Sum(changed[i:i+2], 0))
			// 0x0000 and 0xffff are the same number in one's complement.
			if got != want && !(got^want == 0xffff) {
				t.Errorf("word %d set to %#04x: Update = %#04x, recomputed %#04x", i/2, v, got, want)
			}
		}
	}
}
