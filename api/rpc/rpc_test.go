package rpc_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"kubetunnel/api/rpc"
)

// The full method names are part of the wire contract: renaming a package,
// service or method breaks agents of other versions.
func TestMethodNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{rpc.Configuration_GetConfiguration_FullMethodName, "/kubetunnel.rpc.v1.Configuration/GetConfiguration"},
		{rpc.GitOps_GetObjectsToSynchronize_FullMethodName, "/kubetunnel.rpc.v1.GitOps/GetObjectsToSynchronize"},
		{rpc.GitOps_ReportSyncStatus_FullMethodName, "/kubetunnel.rpc.v1.GitOps/ReportSyncStatus"},
	} {
		if tc.got != tc.want {
			t.Errorf("method name %q, want %q", tc.got, tc.want)
		}
	}
}

func TestObjectsResponseRoundTrip(t *testing.T) {
	in := &rpc.ObjectsToSynchronizeResponse{
		Message: &rpc.ObjectsToSynchronizeResponse_Object_{
			Object: &rpc.ObjectsToSynchronizeResponse_Object{Source: "/manifests/a.yaml", Data: []byte("kind: ConfigMap")},
		},
	}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out rpc.ObjectsToSynchronizeResponse
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, &out) {
		t.Fatalf("round trip: got %v, want %v", &out, in)
	}
	if out.GetObject().GetSource() != "/manifests/a.yaml" || out.GetHeader() != nil {
		t.Fatalf("oneof: got %v", &out)
	}
}
