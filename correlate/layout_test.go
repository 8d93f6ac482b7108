package correlate

import (
	"testing"
	"unsafe"
)

// The memory goal rests on these sizes: an IPv4 connection's slot is one
// cache line.
func TestSlotSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"val", unsafe.Sizeof(val{}), 48},
		{"slot[key4]", unsafe.Sizeof(slot[key4]{}), 64},
		{"slot[key6]", unsafe.Sizeof(slot[key6]{}), 88},
	} {
		if c.got != c.want {
			t.Errorf("sizeof %s = %d, want %d", c.name, c.got, c.want)
		}
	}
}
