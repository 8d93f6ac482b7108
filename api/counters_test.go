package api

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/toad-project/toad/correlate"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// TestTableStatsCounters: TableStats has a uint64 field for every counter
// correlate.Counters describes, and no other field but all_trusted.
func TestTableStatsCounters(t *testing.T) {
	fields := (&toadv1.TableStats{}).ProtoReflect().Descriptor().Fields()
	described := map[string]bool{"all_trusted": true}
	for _, c := range correlate.Counters {
		fd := fields.ByName(protoreflect.Name(c.Name))
		if fd == nil || fd.Kind() != protoreflect.Uint64Kind {
			t.Errorf("counter %s: TableStats has no uint64 field %s: add it to proto/toad/v1", c.Name, c.Name)
		}
		described[c.Name] = true
	}
	for i := range fields.Len() {
		if name := string(fields.Get(i).Name()); !described[name] {
			t.Errorf("TableStats.%s: no counter of correlate.Counters describes it", name)
		}
	}
}

// TestTableStats: each counter of correlate.Stats reaches its own
// TableStats field.
func TestTableStats(t *testing.T) {
	var st correlate.Stats
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Uint64 {
			f.SetUint(uint64(i + 1))
		}
	}
	m := tableStats(st).ProtoReflect()
	for _, c := range correlate.Counters {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(c.Name))
		if fd == nil {
			continue // TestTableStatsCounters says so
		}
		if got, want := m.Get(fd).Uint(), c.Value(&st); got != want {
			t.Errorf("TableStats.%s = %d, want %d", c.Name, got, want)
		}
	}
}
