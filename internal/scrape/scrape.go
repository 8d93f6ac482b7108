// Package scrape reads a toad's HTTP endpoints in tests: it fetches a path
// and parses the Prometheus text exposition into samples by series.
package scrape

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Get fetches path from the metrics listener with get, and returns the
// status code and body.
func Get(t testing.TB, get func(url string) (*http.Response, error), addr, path string) (int, string) {
	t.Helper()
	resp, err := get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// Metrics returns the samples of a text exposition by series:
// `name{labels}` as written.
func Metrics(t testing.TB, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}
