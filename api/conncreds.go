package api

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// connCredentials are plaintext transport credentials, as insecure's, that
// also hand each call the connection it arrived on (as its peer's
// AuthInfo), so that the server can close the connection of a client that
// misbehaves: gRPC offers no other way to reach it.
type connCredentials struct{}

// connInfo is the AuthInfo of a connection served with connCredentials.
type connInfo struct {
	credentials.CommonAuthInfo
	conn net.Conn
}

func (connInfo) AuthType() string { return "insecure" }

func (connCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, connInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, conn: c}, nil
}

func (connCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("api: connCredentials are for servers")
}

func (connCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (connCredentials) Clone() credentials.TransportCredentials { return connCredentials{} }

func (connCredentials) OverrideServerName(string) error { return nil }

// closeConn closes the connection the call of ctx arrived on.
func closeConn(ctx context.Context) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(connInfo); ok {
			info.conn.Close()
		}
	}
}
