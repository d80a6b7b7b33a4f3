module github.com/dmvpn/dmvpn

go 1.26.0
