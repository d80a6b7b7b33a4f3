package engine

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// EventType is what happened to an SA.
type EventType uint8

const (
	// IKESAUp: an IKE SA is established (both AUTH payloads verified).
	IKESAUp EventType = iota + 1
	// IKESADown: an established IKE SA is gone (deleted by either side,
	// the peer dead, replaced); its Child SAs get ChildSADown first.
	IKESADown
	// IKESAFailed: an IKE SA that never came up was given up (no answer,
	// no proposal chosen, authentication failed, ...).
	IKESAFailed
	// ChildSAUp: a Child SA is established: Child holds what the data
	// plane installs.
	ChildSAUp
	// ChildSADown: a Child SA is gone; Child holds its SPIs (no keys).
	ChildSADown
	// ChildSAFailed: the IKE SA came up but the peer refused the Child SA
	// (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE), or we refused its answer.
	ChildSAFailed
	// IKESARekeyed: the IKE SA was rekeyed (RFC 7296 §2.18): SPIi and
	// SPIr are the new SA's, OldSPIi and OldSPIr the old one's, Initiator
	// says whether we initiated the rekey (the new SA's initiator). Its
	// Child SAs moved to the new SA unchanged: no Child SA events.
	IKESARekeyed
	// ChildSAActive: send on this Child SA's outbound SA from now on (it
	// came up with Standby set). Child holds its SPIs, no keys.
	ChildSAActive
)

var eventNames = [...]string{IKESAUp: "ike-sa-up", IKESADown: "ike-sa-down", IKESAFailed: "ike-sa-failed",
	ChildSAUp: "child-sa-up", ChildSADown: "child-sa-down", ChildSAFailed: "child-sa-failed",
	IKESARekeyed: "ike-sa-rekeyed", ChildSAActive: "child-sa-active"}

func (t EventType) String() string {
	if int(t) < len(eventNames) && eventNames[t] != "" {
		return eventNames[t]
	}
	return "unknown"
}

// Mode is a Child SA's IPsec mode.
type Mode uint8

const (
	// Transport: ESP protects the GRE packet as it is (next header 47);
	// DMVPN's mode, negotiated with USE_TRANSPORT_MODE.
	Transport Mode = iota + 1
	// Tunnel: the peer refused transport mode; ESP carries whole IP
	// packets (the data plane adds an outer IP header inside).
	Tunnel
)

func (m Mode) String() string {
	switch m {
	case Transport:
		return "transport"
	case Tunnel:
		return "tunnel"
	}
	return "unknown"
}

// NAT is what NAT detection (RFC 7296 §2.23) found for an IKE SA.
type NAT struct {
	// Local: our address is translated (we are behind NAT).
	Local bool
	// Remote: the peer's address is translated.
	Remote bool
}

// Any reports whether either side is behind NAT: IKE and ESP then go over
// UDP 4500 (ESP in UDP, RFC 3948).
func (n NAT) Any() bool { return n.Local || n.Remote }

// SAKeys are one direction of a Child SA.
type SAKeys struct {
	// SPI is the SPI in that direction's packets: the receiver's choice.
	SPI uint32
	// EncKey and IntegKey are esp.Config's keys; the event owns them (a
	// fresh copy per event).
	EncKey, IntegKey []byte
}

// ChildSA is what the data plane needs to install a Child SA.
type ChildSA struct {
	// Peer is where ESP goes: the peer's IKE endpoint, on UDP 4500 when
	// UDPEncap is set (the port may be a NAT's).
	Peer     netip.AddrPort
	UDPEncap bool
	Mode     Mode
	// Local and Remote are the traffic selectors' hosts: GRE (protocol
	// 47) between them.
	Local, Remote netip.Addr
	Transform     esp.Transform
	ESN           bool
	Inbound       SAKeys
	Outbound      SAKeys
	// Lifetime is the Child SA's time limit: the engine rekeys it before
	// (and deletes it at) that age. Limits are its octet limits for
	// esp.Config: at the soft one the node calls Engine.RekeyChild.
	Lifetime time.Duration
	Limits   esp.Lifetime
	// PFS is the Diffie-Hellman group of the rekey that made it (0: no
	// perfect forward secrecy, the keys come from SK_d alone).
	PFS ikecrypto.Group

	// Replaces, in ChildSAUp, is the inbound SPI of the Child SA this one
	// replaces (a rekey, RFC 7296 §2.8); 0 for a first Child SA.
	Replaces uint32
	// ReplacedBy, in ChildSADown, is the inbound SPI of the Child SA that
	// replaced this one (0: it was not rekeyed but deleted).
	ReplacedBy uint32
	// Standby, in ChildSAUp: install the inbound SA now, but keep sending
	// on the SA it replaces until ChildSAActive names this one (the rekey
	// responder's side: the initiator may not have the new SA yet).
	Standby bool
}

// InboundConfig is the esp.Config of the inbound SA (esp.NewInbound).
func (c *ChildSA) InboundConfig() esp.Config {
	return esp.Config{SPI: c.Inbound.SPI, Transform: c.Transform, EncKey: c.Inbound.EncKey,
		IntegKey: c.Inbound.IntegKey, ESN: c.ESN, Lifetime: c.Limits}
}

// OutboundConfig is the esp.Config of the outbound SA (esp.NewOutbound).
func (c *ChildSA) OutboundConfig() esp.Config {
	return esp.Config{SPI: c.Outbound.SPI, Transform: c.Transform, EncKey: c.Outbound.EncKey,
		IntegKey: c.Outbound.IntegKey, ESN: c.ESN, Lifetime: c.Limits}
}

// ReasonDeletedByPeer is the Reason of the down events of SAs the peer
// deleted (an INFORMATIONAL Delete): the peer is alive and chose to.
const ReasonDeletedByPeer = "deleted by the peer"

// Event is one SA state change, reported through Config.OnEvent.
type Event struct {
	Type EventType
	Time time.Time
	// Peer is the peer's IKE endpoint as the SA knows it now.
	Peer netip.AddrPort
	// SPIi and SPIr are the IKE SA's SPIs; Initiator says whether we are
	// its original initiator (of a rekeyed SA: of the rekey).
	SPIi, SPIr ikev2.SPI
	Initiator  bool
	// OldSPIi and OldSPIr, in IKESARekeyed, are the replaced SA's SPIs.
	OldSPIi, OldSPIr ikev2.SPI
	// IKEKeys, in IKESAUp and IKESARekeyed with Config.ExportKeys, are the
	// IKE SA's SK payload keys (a fresh copy), for Wireshark's
	// ikev2_decryption_table.
	IKEKeys *ikecrypto.IKEKeyLog
	// RemoteID is the peer's authenticated identity (zero before AUTH).
	RemoteID Identity
	NAT      NAT
	// Reason says why, in words ("deleted by the peer", "dead peer: ...").
	Reason string
	// Child is set for the Child SA events.
	Child *ChildSA
}

// Identity is an IKE identity (ID payload): an address, an FQDN or a key ID.
type Identity struct {
	Type ikev2.IDType
	Data []byte
}

// AddrID is the identity ID_IPV4_ADDR or ID_IPV6_ADDR of a.
func AddrID(a netip.Addr) Identity {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return Identity{Type: ikev2.IDIPv4Addr, Data: b[:]}
	}
	b := a.As16()
	return Identity{Type: ikev2.IDIPv6Addr, Data: b[:]}
}

// FQDNID is the identity ID_FQDN of name.
func FQDNID(name string) Identity { return Identity{Type: ikev2.IDFQDN, Data: []byte(name)} }

// KeyID is the identity ID_KEY_ID of id (opaque octets).
func KeyID(id []byte) Identity { return Identity{Type: ikev2.IDKeyID, Data: bytes.Clone(id)} }

// IsZero reports whether id is unset (no check, or none known).
func (id Identity) IsZero() bool { return id.Type == 0 && len(id.Data) == 0 }

// Equal reports whether two identities are the same type and octets.
func (id Identity) Equal(o Identity) bool { return id.Type == o.Type && bytes.Equal(id.Data, o.Data) }

func (id Identity) String() string {
	switch id.Type {
	case 0:
		return ""
	case ikev2.IDIPv4Addr, ikev2.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case ikev2.IDFQDN, ikev2.IDRFC822Addr:
		return string(id.Data)
	}
	return id.Type.String() + ":" + hex.EncodeToString(id.Data)
}

func (id Identity) payload() *ikev2.ID { return &ikev2.ID{Type: id.Type, Data: id.Data} }

// valid reports whether the identity can go into an ID payload.
func (id Identity) valid() bool {
	switch id.Type {
	case ikev2.IDIPv4Addr:
		return len(id.Data) == 4
	case ikev2.IDIPv6Addr:
		return len(id.Data) == 16
	case ikev2.IDFQDN, ikev2.IDKeyID, ikev2.IDRFC822Addr:
		return len(id.Data) > 0 && len(id.Data) <= 255
	}
	return false
}
