package ikev2_test

import (
	"fmt"

	"github.com/dmvpn/dmvpn/ikev2"
)

// typedReencode builds m again from the typed value of every payload it
// knows, through the Builder's typed methods (or AppendBody and
// Builder.Payload when the payload has its critical or reserved bits set,
// which the typed methods always clear); SK, SKF and unknown payloads go
// through Builder.Payload as they are.
func typedReencode(m *ikev2.Message) ([]byte, error) {
	b := ikev2.NewMessage(nil, &m.Header)
	if err := typedChain(&b, m.Payloads); err != nil {
		return nil, err
	}
	return b.Finish()
}

// typedChain appends ps to b from their typed values.
func typedChain(b *ikev2.Builder, ps []ikev2.Payload) error {
	for i := range ps {
		p := &ps[i]
		plain := !p.Critical && p.Reserved == 0
		var body []byte
		var err error
		switch p.Type {
		case ikev2.PayloadSA:
			var sa ikev2.SA
			if err = p.SA(&sa); err == nil {
				if plain {
					b.SA(&sa)
				} else {
					body, err = sa.AppendBody(nil)
				}
			}
		case ikev2.PayloadKE:
			var ke ikev2.KE
			if ke, err = p.KE(); err == nil {
				if plain {
					b.KE(&ke)
				} else {
					body, err = ke.AppendBody(nil)
				}
			}
		case ikev2.PayloadIDi, ikev2.PayloadIDr:
			var id ikev2.ID
			if id, err = p.ID(); err == nil {
				switch {
				case !plain:
					body, err = id.AppendBody(nil)
				case p.Type == ikev2.PayloadIDi:
					b.IDi(&id)
				default:
					b.IDr(&id)
				}
			}
		case ikev2.PayloadCERT, ikev2.PayloadCERTREQ:
			var c ikev2.Cert
			if c, err = p.Cert(); err == nil {
				switch {
				case !plain:
					body, err = c.AppendBody(nil)
				case p.Type == ikev2.PayloadCERT:
					b.Cert(&c)
				default:
					b.CertReq(&c)
				}
			}
		case ikev2.PayloadAUTH:
			var a ikev2.Auth
			if a, err = p.Auth(); err == nil {
				if plain {
					b.Auth(&a)
				} else {
					body, err = a.AppendBody(nil)
				}
			}
		case ikev2.PayloadNonce:
			var n []byte
			if n, err = p.Nonce(); err == nil {
				if plain {
					b.Nonce(n)
				} else {
					body = n
				}
			}
		case ikev2.PayloadNotify:
			var n ikev2.Notify
			if n, err = p.Notify(); err == nil {
				if plain {
					b.Notify(&n)
				} else {
					body, err = n.AppendBody(nil)
				}
			}
		case ikev2.PayloadDelete:
			var d ikev2.Delete
			if d, err = p.Delete(); err == nil {
				if plain {
					b.Delete(&d)
				} else {
					body, err = d.AppendBody(nil)
				}
			}
		case ikev2.PayloadVendorID:
			var v []byte
			if v, err = p.VendorID(); err == nil {
				if plain {
					b.VendorID(v)
				} else {
					body = v
				}
			}
		case ikev2.PayloadTSi, ikev2.PayloadTSr:
			var ts ikev2.TrafficSelectors
			if err = p.TrafficSelectors(&ts); err == nil {
				switch {
				case !plain:
					body, err = ts.AppendBody(nil)
				case p.Type == ikev2.PayloadTSi:
					b.TSi(&ts)
				default:
					b.TSr(&ts)
				}
			}
		case ikev2.PayloadCP:
			var c ikev2.CP
			if c, err = p.CP(); err == nil {
				if plain {
					b.CP(&c)
				} else {
					body, err = c.AppendBody(nil)
				}
			}
		case ikev2.PayloadEAP:
			var e []byte
			if e, err = p.EAP(); err == nil {
				if plain {
					b.EAP(e)
				} else {
					body = e
				}
			}
		default: // SK, SKF, unknown types
			plain = false
			body = p.Body
		}
		if err != nil {
			return fmt.Errorf("%v payload at %d: %w", p.Type, p.Offset, err)
		}
		if !plain {
			b.Payload(&ikev2.Payload{Type: p.Type, Next: p.Next, Critical: p.Critical, Reserved: p.Reserved, Body: body})
		}
	}
	return b.Err()
}
