package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/toad-project/toad/api/client"
)

// An HTTP server whose handlers see the real client in r.RemoteAddr: the
// wrapped listener asks the toad on /run/toad/toad.sock, and falls back
// to the proxy's address for connections toad does not know.
func ExampleWrap() {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s\n", r.RemoteAddr)
	})
	log.Fatal(http.Serve(client.Wrap(ln), nil))
}

// Asking for one connection, with a client of its own.
func ExampleClient_RealAddr() {
	c, err := client.New("unix:///run/toad/toad.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer conn.Close()
			real, err := c.RealAddr(context.Background(), conn)
			switch {
			case errors.Is(err, client.ErrNotFound):
				log.Printf("%v: no TOA, not through a trusted proxy", conn.RemoteAddr())
			case err != nil:
				log.Printf("%v: toad: %v", conn.RemoteAddr(), err)
			default:
				log.Printf("%v is %v", conn.RemoteAddr(), real)
			}
		}()
	}
}
