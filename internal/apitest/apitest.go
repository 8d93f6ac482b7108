// Package apitest serves and dials a toad API in tests: a real server on a
// real unix socket and real clients, stopped when the test ends.
package apitest

import (
	"path/filepath"
	"testing"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/client"
)

// ServeUnix serves srv on a unix socket in a directory of the test's own
// and returns the socket's path. When the test ends it closes srv and
// fails the test if Serve returned an error.
func ServeUnix(t testing.TB, srv *api.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "toad.sock")
	l, err := api.ListenUnix(path, api.DefaultSocketMode)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// Client dials target with opts and closes the client when the test ends.
func Client(t testing.TB, target string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
