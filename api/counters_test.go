package api

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/journal"
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

// TestJournalStatsCounters: every counter of journal.Counters has its
// JournalStats field (failing a bool, the others uint64), every field its
// counter, and each reaches its own field.
func TestJournalStatsCounters(t *testing.T) {
	fields := (&toadv1.JournalStats{}).ProtoReflect().Descriptor().Fields()
	described := map[string]bool{}
	for _, c := range journal.Counters {
		fd := fields.ByName(protoreflect.Name(c.Name))
		if fd == nil || (fd.Kind() != protoreflect.Uint64Kind && fd.Kind() != protoreflect.BoolKind) {
			t.Errorf("counter %s: JournalStats has no uint64 or bool field %s: add it to proto/toad/v1", c.Name, c.Name)
		}
		described[c.Name] = true
	}
	for i := range fields.Len() {
		if name := string(fields.Get(i).Name()); !described[name] {
			t.Errorf("JournalStats.%s: no counter of journal.Counters describes it", name)
		}
	}
	st := journal.Stats{Records: 1, Groups: 2, Bytes: 3, Compactions: 4, Overflows: 5, Lost: 6, Dropped: 7, WriteErrors: 8, Failing: true, Size: 10}
	want := &toadv1.JournalStats{Records: 1, Groups: 2, Bytes: 3, Compactions: 4, Overflows: 5, Lost: 6, Dropped: 7, WriteErrors: 8, Failing: true, SizeBytes: 10}
	if got := journalStats(st); !proto.Equal(got, want) {
		t.Errorf("journalStats(%+v) = %v, want %v", st, got, want)
	}
}
