package craft

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CorpusFile encodes one fuzz input as a file of go test's seed corpus
// (testdata/fuzz/FuzzName/*). Values are []byte, string, bool, or unsized
// and sized integers other than int32 and uint8, in the order of the fuzz
// function's arguments.
func CorpusFile(vals ...any) []byte {
	b := bytes.NewBufferString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(b, "string(%q)\n", v)
		case uint8:
			fmt.Fprintf(b, "byte(%q)\n", v)
		case bool, int, int8, int16, int64, uint, uint16, uint32, uint64:
			fmt.Fprintf(b, "%T(%v)\n", v, v)
		default:
			panic(fmt.Sprintf("craft: fuzz corpus cannot hold %T", v))
		}
	}
	return b.Bytes()
}

// corpusPrefix names the generated files of a seed corpus; other files in
// the directory (inputs the fuzzer found failing) are left alone.
const corpusPrefix = "seed-"

// SyncCorpus keeps the generated part of a seed corpus directory in step
// with files (base name without the "seed-" prefix, to content). With
// update it writes the files and removes generated ones no longer wanted;
// without, it reports every file that is missing, different or stale.
func SyncCorpus(dir string, files map[string][]byte, update bool) error {
	have, err := filepath.Glob(filepath.Join(dir, corpusPrefix+"*"))
	if err != nil {
		return err
	}
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("seed corpus: %w", err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, corpusPrefix+name), content, 0o644); err != nil {
				return fmt.Errorf("seed corpus: %w", err)
			}
		}
		for _, path := range have {
			if _, ok := files[strings.TrimPrefix(filepath.Base(path), corpusPrefix)]; !ok {
				if err := os.Remove(path); err != nil {
					return fmt.Errorf("seed corpus: %w", err)
				}
			}
		}
		return nil
	}
	var errs []error
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(dir, corpusPrefix+name)
		got, err := os.ReadFile(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s is missing", path))
		case !bytes.Equal(got, files[name]):
			errs = append(errs, fmt.Errorf("%s is out of date", path))
		}
	}
	for _, path := range have {
		if _, ok := files[strings.TrimPrefix(filepath.Base(path), corpusPrefix)]; !ok {
			errs = append(errs, fmt.Errorf("%s is no longer generated", path))
		}
	}
	return errors.Join(errs...)
}
