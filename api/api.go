// Package api is the daemon's management interface: HTTP/JSON on a unix
// socket (GET /v1/dmvpn, /v1/nhrp, /v1/routes, /v1/stats, and /v1/metrics:
// the Prometheus text exposition; /v1/capture streams a packet capture as
// pcapng, capture.go; /v1/events the node's events as JSON lines,
// events.go), the client the CLI's `show` commands use, and the text
// renderings of those views.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// DMVPN is `show dmvpn`: the node and its peers, like Cisco's output.
type DMVPN struct {
	Node      string `json:"node"`
	Role      string `json:"role"` // hub | spoke
	Interface string `json:"interface"`
	Address   string `json:"address"`
	NBMA      string `json:"nbma"`
	Transport string `json:"transport"`
	NetworkID uint32 `json:"network_id"`
	Peers     []Peer `json:"peers"`
}

// Peer is one row of `show dmvpn`.
type Peer struct {
	PeerNBMA    string    `json:"peer_nbma"`              // where we send: observed address (and UDP port)
	ClaimedNBMA string    `json:"claimed_nbma,omitempty"` // what the peer says it is (differs behind NAT)
	PeerTunnel  string    `json:"peer_tunnel"`
	State       string    `json:"state"` // UP, NHRP (registering), DOWN, REFUSED, ERROR
	Since       time.Time `json:"since"`
	UpDown      string    `json:"updn"` // time in state, hh:mm:ss
	Attributes  string    `json:"attributes"`
	Type        string    `json:"type"` // static, dynamic, resolved, ...
	NAT         bool      `json:"nat"`
	Transport   string    `json:"transport"`
	Reason      string    `json:"reason,omitempty"` // why a registration is not up
	// Crypto is the peer's IPsec state with IPsec on: up (an SA),
	// waiting (packets wait for IKE) or none; empty without IPsec.
	Crypto string `json:"crypto,omitempty"`
}

// NHRPEntry is one row of `show nhrp` (the NHRP cache).
type NHRPEntry struct {
	Protocol    string     `json:"protocol"`
	Prefix      string     `json:"prefix"`
	NBMA        string     `json:"nbma"`
	ClaimedNBMA string     `json:"claimed_nbma"`
	Type        string     `json:"type"`
	Flags       []string   `json:"flags"`
	Transport   string     `json:"transport"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires,omitempty"`
	HoldingTime string     `json:"holding_time,omitempty"`
	// The packets and bytes (GRE header and payload) the data path
	// received from and sent to the entry's NBMA endpoint.
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// Route is one row of `show routes`.
type Route struct {
	Prefix  string `json:"prefix"`
	NextHop string `json:"next_hop"`
	Source  string `json:"source"`
	// Distance orders the sources of one prefix: the lowest wins (see
	// fib.Source.Distance).
	Distance int  `json:"distance"`
	Best     bool `json:"best"`
}

// Stats is the node's counters.
type Stats struct {
	DataPlane map[string]uint64 `json:"dataplane"`
	NHRP      map[string]uint64 `json:"nhrp"`
	// NHRPDropped counts NHRP packets dropped, by reason (role rules,
	// bounds, rate limits, the control queue being full).
	NHRPDropped map[string]uint64 `json:"nhrp_dropped"`
	// Underlay has the counters of each underlay socket, by transport
	// ("gre", "udp"): datagrams, system calls, and UDP GSO/GRO use.
	Underlay map[string]map[string]uint64 `json:"underlay,omitempty"`
	// Events counts the node's events (published, lost by slow
	// subscribers, subscribers now) and hook runs (started, succeeded,
	// failed, timed out, dropped for want of room).
	Events map[string]uint64 `json:"events,omitempty"`
}

// Provider is what the daemon exposes; package node implements it.
type Provider interface {
	DMVPN() DMVPN
	NHRP() []NHRPEntry
	Routes() []Route
	Stats() Stats
	// ClearNHRP forgets resolved mappings and shortcut routes (Cisco's
	// `clear ip nhrp`) and returns how many cache entries went.
	ClearNHRP() int
}

// Reloader is a Provider that can re-read and apply its configuration
// (package node implements it): POST /v1/reload.
type Reloader interface {
	Reload() (changed []string, err error)
}

// Reloaded is the answer to a reload: what changed, or why nothing did.
type Reloaded struct {
	Changed []string `json:"changed"`
	Error   string   `json:"error,omitempty"`
}

// MetricsProvider is a Provider with Prometheus metrics (package node
// implements it): GET /v1/metrics answers with Metrics(), which serves the
// text exposition. A Provider without it answers 404 there.
type MetricsProvider interface {
	Provider
	Metrics() http.Handler
}

// Cleared is the answer to POST /v1/clear/nhrp.
type Cleared struct {
	Entries int `json:"entries"`
}

// Serve answers API requests on the unix socket at path until ctx is done.
// A stale socket file is replaced.
func Serve(ctx context.Context, path string, p Provider) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	err = ServeListener(ctx, l, p)
	_ = os.Remove(path)
	return err
}

// Listen opens the API's unix socket at path (mode 0660), creating its
// directory and replacing a stale socket file, so that a daemon can fail at
// start-up, with the cause, when it cannot serve its API. Closing the
// listener removes the socket file. Only one process may serve a path: the
// caller must make sure no other daemon is using it (dmvpn run holds a
// lock next to it), since the old socket file is removed unconditionally.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	return l, nil
}

// ServeListener answers API requests on l (from Listen) until ctx is done,
// then closes it.
func ServeListener(ctx context.Context, l net.Listener, p Provider) error {
	mux := http.NewServeMux()
	handle := func(route string, f func() any) {
		mux.HandleFunc("GET "+route, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(f())
		})
	}
	handle("/v1/dmvpn", func() any { return p.DMVPN() })
	handle("/v1/nhrp", func() any { return p.NHRP() })
	handle("/v1/routes", func() any { return p.Routes() })
	handle("/v1/stats", func() any { return p.Stats() })
	if m, ok := p.(MetricsProvider); ok {
		mux.Handle("GET /v1/metrics", m.Metrics())
	}
	if b, ok := p.(BGPProvider); ok {
		handle("/v1/bgp", func() any { return b.BGP() }) // bgp.go
	}
	if x, ok := p.(IPsecProvider); ok {
		handle("/v1/ipsec", func() any { return x.IPsec() }) // ipsec.go
	}
	if c, ok := p.(CaptureProvider); ok {
		handleCapture(mux, ctx, c) // GET /v1/capture: pcapng (capture.go)
	}
	if e, ok := p.(EventsProvider); ok {
		handleEvents(mux, ctx, e) // GET /v1/events: NDJSON (events.go)
	}
	if r, ok := p.(Reloader); ok {
		mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			changed, err := r.Reload()
			res := Reloaded{Changed: changed}
			if res.Changed == nil {
				res.Changed = []string{}
			}
			if err != nil {
				res.Error = err.Error()
				w.WriteHeader(http.StatusConflict)
			}
			_ = json.NewEncoder(w).Encode(res)
		})
	}
	mux.HandleFunc("POST /v1/clear/nhrp", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Cleared{Entries: p.ClearNHRP()})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(l) // closes l (a unix listener removes its socket file)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Client talks to a daemon's API socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, hc: &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Get fetches /v1/<what> and decodes it into v; raw gets the JSON text.
func (c *Client) Get(ctx context.Context, what string, v any) (raw []byte, err error) {
	return c.do(ctx, http.MethodGet, what, v)
}

// Metrics fetches /v1/metrics: the daemon's metrics in the Prometheus text
// exposition format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "metrics", nil)
}

// Reload asks the daemon to re-read and apply its configuration file. A
// refused reload (invalid, or a change that needs a restart) is an error
// saying why; the daemon keeps running its previous configuration.
func (c *Client) Reload(ctx context.Context) (Reloaded, error) {
	var r Reloaded
	raw, err := c.do(ctx, http.MethodPost, "reload", &r)
	if err != nil && raw != nil && json.Unmarshal(raw, &r) == nil && r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, err
}

// ClearNHRP asks the daemon to forget its resolved mappings and shortcuts.
func (c *Client) ClearNHRP(ctx context.Context) (Cleared, error) {
	var r Cleared
	_, err := c.do(ctx, http.MethodPost, "clear/nhrp", &r)
	return r, err
}

func (c *Client) do(ctx context.Context, method, what string, v any) (raw []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://dmvpn/v1/"+what, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the dmvpn daemon at %s (is `dmvpn run` running?): %w", c.path, err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return raw, fmt.Errorf("api: %s: %s", what, resp.Status)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return raw, fmt.Errorf("api: decode %s: %w", what, err)
		}
	}
	return raw, nil
}
