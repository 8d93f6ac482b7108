package correlate

import (
	"reflect"
	"testing"
)

// TestCounters: every counter of Stats is described once, with help, and
// every description reads a field.
func TestCounters(t *testing.T) {
	typ := reflect.TypeFor[Stats]()
	names := map[string]bool{}
	for _, c := range Counters {
		if names[c.Name] || c.Name == "" || c.Help == "" {
			t.Errorf("counter %q: duplicate or empty name, or no help", c.Name)
		}
		names[c.Name] = true
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			continue
		}
		var st Stats
		reflect.ValueOf(&st).Elem().Field(i).SetUint(1e9 + uint64(i))
		read := 0
		for _, c := range Counters {
			if c.Value(&st) == 1e9+uint64(i) {
				read++
			}
		}
		if read != 1 {
			t.Errorf("Stats.%s is read by %d counters, want 1", f.Name, read)
		}
	}
}
