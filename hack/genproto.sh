#!/usr/bin/env bash
# Regenerates the Go code for the protobuf files under api/.
#
# Needs protoc (Debian: apt-get install protobuf-compiler) and the Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@<google.golang.org/protobuf version in go.mod>
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest
# The generated files are committed, so only those who change a .proto need this.
set -euo pipefail

cd "$(dirname "$0")/.."

export PATH="$(go env GOPATH)/bin:$PATH"

for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
	if ! command -v "$tool" >/dev/null; then
		echo "genproto: $tool not found; see the comment at the top of $0" >&2
		exit 1
	fi
done

# The proto files sit at their Go package path relative to the module root, so
# module=kubetunnel writes each generated file next to its .proto.
find api -name '*.proto' -print0 | xargs -0 protoc \
	--proto_path=. \
	--go_out=. --go_opt=module=kubetunnel \
	--go-grpc_out=. --go-grpc_opt=module=kubetunnel
