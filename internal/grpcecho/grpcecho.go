// Package grpcecho is grpc.testing's TestService answering with payloads
// of the sizes asked for: the bare gRPC baseline toad's API is measured
// against, in api's benchmarks, the end-to-end test and bench/apicmp.
package grpcecho

import (
	"context"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// Echo is grpc.testing's TestService, answering with payloads of the sizes
// asked for.
type Echo struct {
	testgrpc.UnimplementedTestServiceServer
}

func (Echo) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (Echo) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, s testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range req.GetResponseParameters() {
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

// Request returns an echo request of the size of req asking for a
// response of the size of resp: the same bytes on the wire, none of the
// work.
func Request(req, resp proto.Message) *testgrpc.SimpleRequest {
	size := int32(Sized(proto.Size(resp), func(n int) proto.Message {
		return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, n)}}
	}))
	body := Sized(proto.Size(req), func(n int) proto.Message {
		return &testgrpc.SimpleRequest{ResponseSize: size, Payload: &testgrpc.Payload{Body: make([]byte, n)}}
	})
	return &testgrpc.SimpleRequest{ResponseSize: size, Payload: &testgrpc.Payload{Body: make([]byte, body)}}
}

// Sized returns the payload length n for which mk(n) encodes to want
// bytes, or the nearest below.
func Sized(want int, mk func(n int) proto.Message) int {
	n := want
	for n > 0 {
		got := proto.Size(mk(n))
		if got <= want {
			return n
		}
		n -= got - want
	}
	return 0
}

// Stream makes one StreamingOutputCall of req and receives its n
// responses.
func Stream(ctx context.Context, c testgrpc.TestServiceClient, req *testgrpc.StreamingOutputCallRequest, n int) error {
	st, err := c.StreamingOutputCall(ctx, req)
	if err != nil {
		return err
	}
	for range n {
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
	return nil
}
