//go:build !race

package ipsec_test

const raceEnabled = false
