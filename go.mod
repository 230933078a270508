module github.com/confidential-go/atls

go 1.26.0

toolchain go1.26.11

require (
	github.com/google/go-sev-guest v0.15.0
	github.com/google/logger v1.1.1
	github.com/google/uuid v1.6.0
	github.com/quic-go/quic-go v0.65.0
	github.com/stretchr/testify v1.12.1
	golang.org/x/crypto v0.59.0
	google.golang.org/protobuf v1.33.0
)

require (
	github.com/google/go-configfs-tsm v0.2.2 // indirect
	github.com/quic-go/qpack v0.6.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
