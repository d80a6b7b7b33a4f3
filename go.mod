module github.com/dmvpn/dmvpn

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/gopacket/gopacket v1.7.7 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)
