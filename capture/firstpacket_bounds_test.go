package capture

import (
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
)

// TestFirstPacketTimeBounds: peeking at the first packet of a file, to
// order several by time, is as bounded as reading them: a first block that
// claims a huge packet is refused before it is allocated.
func TestFirstPacketTimeBounds(t *testing.T) {
	frame := craft.Framing{Link: decode.LinkEthernet}.Frame((&craft.Segment{Src: proxy4, Dst: server4, Flags: decode.SYN}).IP())
	for _, c := range []struct {
		name  string
		block []byte
	}{
		{"enhanced packet larger than its block", ngBlock(ngEPB, 0, ngEPBHeader(1<<30, 1<<30), frame)},
		{"block of 4 GiB", ngBlock(0x0BAD, 0xfffffff0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := append(ngStart(0), c.block...)
			var first bool
			n := allocated(func() {
				ts, _ := firstPacketTime(in)
				first = !ts.IsZero()
			})
			if first || n > 8<<20 {
				t.Errorf("firstPacketTime: a time %v, %d bytes allocated; want none, at most %d", first, n, 8<<20)
			}
		})
	}
}
