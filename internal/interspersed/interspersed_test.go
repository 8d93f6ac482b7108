package interspersed_test

import (
	"errors"
	"flag"
	"io"
	"slices"
	"testing"

	"github.com/toad-project/toad/internal/interspersed"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		pos     []string
		n       int
		json    bool
		wantErr error
	}{
		{"flags first", []string{"-n", "3", "-json", "a", "b"}, []string{"a", "b"}, 3, true, nil},
		{"flags between and after", []string{"a", "-n", "3", "b", "-json"}, []string{"a", "b"}, 3, true, nil},
		{"no arguments", []string{"-json"}, nil, 0, true, nil},
		{"nothing", nil, nil, 0, false, nil},
		{"dash dash ends the flags", []string{"a", "--", "-json", "b"}, []string{"a", "-json", "b"}, 0, false, nil},
		{"dash dash after a flag", []string{"-n", "2", "--", "-n"}, []string{"-n"}, 2, false, nil},
		{"a lone dash is an argument", []string{"-", "-json"}, []string{"-"}, 0, true, nil},
		{"help", []string{"a", "-h"}, nil, 0, false, flag.ErrHelp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			n := fs.Int("n", 0, "")
			json := fs.Bool("json", false, "")
			pos, err := interspersed.Parse(fs, tt.args)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(pos, tt.pos) || *n != tt.n || *json != tt.json {
				t.Errorf("got %q -n %d -json %v, want %q -n %d -json %v", pos, *n, *json, tt.pos, tt.n, tt.json)
			}
		})
	}
	t.Run("bad flag", func(t *testing.T) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		if _, err := interspersed.Parse(fs, []string{"a", "-nope"}); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("unknown flag: error %v, want one naming it", err)
		}
	})
}
