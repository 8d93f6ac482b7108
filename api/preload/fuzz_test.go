package preload_test

import (
	"testing"

	"github.com/toad-project/toad/api/preload"
)

// FuzzParse feeds arbitrary messages to the decoders the server and the
// tests use: none may panic, and a lookup that parses encodes back to the
// same frame.
func FuzzParse(f *testing.F) {
	var fr preload.Frame
	(&preload.Hello{PID: 1}).Put(&fr, 1)
	f.Add(fr[:])
	(&preload.Lookup{}).Put(&fr, 2)
	f.Add(fr[:])
	preload.PutReport(&fr, 3, &preload.Report{1, 2, 3})
	f.Add(fr[:])
	f.Add([]byte("TD"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in preload.Frame
		n := copy(in[:], b)
		if len(b) > preload.FrameSize {
			n = len(b)
		}
		h, err := preload.ParseHeader(&in, n)
		if err != nil {
			return
		}
		switch h.Type {
		case preload.TypeHello:
			preload.ParseHello(&in)
		case preload.TypeWelcome:
			preload.ParseWelcome(&in)
		case preload.TypeRanges:
			preload.ParseRanges(&in)
		case preload.TypeReport:
			preload.ParseReport(&in)
		case preload.TypeAnswer:
			preload.ParseAnswer(&in)
		case preload.TypeLookup:
			l, err := preload.ParseLookup(&in)
			if err != nil {
				return
			}
			var out preload.Frame
			l.Put(&out, h.ID)
			again, err := preload.ParseLookup(&out)
			if err != nil || again != l {
				t.Fatalf("lookup %+v encodes to one that parses as %+v, %v", l, again, err)
			}
		}
	})
}
